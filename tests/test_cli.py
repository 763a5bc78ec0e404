"""`asr-kd --help`: every verb with its purpose, grouped by the recipe stages that run it, in stage order."""

from __future__ import annotations

import re

from asr_kd.bin.cli import available_verbs, main
from asr_kd.report.status import RECIPE_STAGES
from tests.recipe_run import RUN_SH


def test_help_gives_every_verb_a_purpose_under_the_stages_in_recipe_order(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "recipes/run.sh" in out and "egs/synth/run.sh" in out
    listed = dict(re.findall(r"^  ([a-z][\w-]*) +(\S.*)$", out, flags=re.M))
    for verb in available_verbs():
        assert listed.get(verb, "").strip(), f"{verb} has no purpose in --help"
    for verb in available_verbs():  # each listed once: train under its first stage, augment-data under 4
        assert len(re.findall(rf"^  {verb} ", out, flags=re.M)) == 1, verb
    # Under the heading of stage 4 (its wrapped lines indented): the verbs it calls, copies before their bank.
    assert re.search(r"^stages? 4\b.*(\n    .*)*\n  augment-data .*\n  build-frame-bank ", out, flags=re.M)
    firsts = [int(n) for n in re.findall(r"^stages? (\d+)", out, flags=re.M)]
    assert firsts == sorted(firsts) and firsts[0] == 0 and firsts[-1] == 11


def test_stage_table_names_the_verbs_each_stage_of_run_sh_calls():
    script = RUN_SH.read_text()
    blocks = re.split(r"\brun_stage (\d+)", script)[1:]  # number, text up to the next stage, ...
    in_script = {}
    for number, text in zip(blocks[::2], blocks[1::2]):
        assert f'log "Stage {number}:' in text
        in_script[int(number)] = sorted({v.replace("_", "-") for v in re.findall(r"asr_kd\.bin\.(\w+)", text)})
    assert in_script == {s.number: sorted(s.verbs) for s in RECIPE_STAGES}


def test_an_unknown_verb_exits_2(capsys):
    assert main(["trian"]) == 2
    assert "unknown verb 'trian'" in capsys.readouterr().err
