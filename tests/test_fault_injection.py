"""Fault injection: the tiny recipe SIGKILLed inside every stage in turn, rerun after each kill.

From the frame banks on (stages 4-11) the killed-and-rerun experiment must end with the same files
as the suite's uninterrupted run (`tiny_recipe_exp`, over a copy of its stages 1-3): every network
and soft-target array byte for byte, the same WERs and the same Table 1 and Table 5. Killed inside
stages 1-3 (from nothing), it must end with the uninterrupted run's features, lang, LM, GMMs, graph
and alignments, byte for byte: GMM training is reproducible (its Gaussian splits are seeded) and a
killed system is trained again from the start.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from tests.recipe_run import REPO, RUN_SH, env_with_this_python

pytestmark = pytest.mark.slow

STAGE_LINE = re.compile(r"^(\S+ \S+) \(\S+\) Stage (\d+): (.*)$")


def _stage_starts(log: Path) -> list[tuple[datetime, int, bool]]:
    """(time, stage, skipped) of every 'Stage N:' line of a recipe's run.log that starts or skips a stage (not the
    'Stage N: finished' lines of stages whose networks train side by side)."""
    out = []
    for line in log.read_text().splitlines() if log.is_file() else []:
        m = STAGE_LINE.match(line)
        if m and not m.group(3).startswith("finished"):
            out.append((datetime.fromisoformat(m.group(1)), int(m.group(2)), m.group(3).startswith("done before")))
    return out


def _stage_seconds(log: Path) -> dict[int, float]:
    """How long each stage ran in a finished run (its start to the next stage's start, or to 'Finished')."""
    ran = [(t, n) for t, n, skipped in _stage_starts(log) if not skipped]
    finished = [datetime.fromisoformat(" ".join(line.split()[:2])) for line in log.read_text().splitlines()
                if ") Finished stages " in line]
    ends = [t for t, _ in ran[1:]] + finished[-1:]
    return {n: max(1.0, (end - t).total_seconds()) for (t, n), end in zip(ran, ends)}


def _kill_inside_each_stage(exp: Path, corpus: Path, stages: list[int], seconds: dict[int, float], seed: int,
                            *extra: str) -> dict[int, float]:
    """Run the recipe, SIGKILL its process group at a random point of each stage of `stages`, rerun after each
    kill, until the run ends; returns the delay after its start at which each stage was killed."""
    rng = random.Random(seed)
    log = exp / "log" / "run.log"
    killed: dict[int, float] = {}
    cmd = ["bash", str(RUN_SH), "--preset", "tiny", "--corpus-dir", str(corpus), "--exp-dir", str(exp), *extra]
    for _ in range(3 * len(stages) + 1):
        seen = len(_stage_starts(log))
        proc = subprocess.Popen(cmd, cwd=REPO, env=env_with_this_python(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        while proc.poll() is None:
            started = [(n, skipped) for _, n, skipped in _stage_starts(log)[seen:]]
            running = next((n for n, skipped in reversed(started) if not skipped), None)
            if running in stages and running not in killed:
                # A random point of the stage, from how long it took in the uninterrupted run: in its first
                # third, as a kill after the stage finished could not be tried again, and the run.log times are
                # whole seconds, and this run may go up to ~3x faster than that one did (`make test` runs two
                # test files at a time, so either may have shared the cores with another recipe run).
                delay = rng.uniform(0.05, 0.35) * seconds.get(running, 5.0)
                time.sleep(delay)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    # Every stage started in this run and not done was cut off (stages 5 and 6 run together:
                    # their networks train side by side); otherwise try it again on the rerun.
                    for _, n, skipped in _stage_starts(log)[seen:]:
                        if n in stages and not skipped and not (exp / f".stage{n}.done").exists():
                            killed.setdefault(n, delay)
                break
            time.sleep(0.05)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, f"the recipe failed with status {proc.returncode}: {exp / 'log'}"
    assert proc.returncode == 0, f"the recipe did not finish after the kills; killed so far: {killed}"
    return killed


def test_killed_in_every_stage_from_the_frame_banks_on_ends_as_the_uninterrupted_run(tiny_recipe_exp, tiny_corpus,
                                                                                      tmp_path):
    ref = tiny_recipe_exp
    exp = tmp_path / "killed"
    exp.mkdir()
    for name in ("data", "lang", "lang_test", "lm", "gmm"):  # stages 1-3 of the reference, as they are
        shutil.copytree(ref / name, exp / name)
    for n in (1, 2, 3):
        (exp / f".stage{n}.done").touch()
    stages = list(range(4, 12))
    killed = _kill_inside_each_stage(exp, tiny_corpus, stages, _stage_seconds(ref / "log" / "run.log"), seed=1)
    assert sorted(killed) == stages, killed  # every stage was killed at least once while it ran
    for final in sorted(ref.glob("nnet/*/final.pt")):
        ours = exp / final.relative_to(ref)
        assert ours.read_bytes() == final.read_bytes(), f"{final.relative_to(ref)} differs after the kills"
    for array in ("probs.npy", "class_ids.npy"):
        assert np.array_equal(np.load(exp / "soft_T2" / array), np.load(ref / "soft_T2" / array)), array
    for results in sorted(ref.glob("decode/*/results.json")):
        ours = (exp / results.relative_to(ref)).read_text()
        for key in ('"wer"', '"lmwt"'):
            assert re.findall(rf"{key}: [^,}}]+", ours) == re.findall(rf"{key}: [^,}}]+", results.read_text())

    def tables(md: str) -> str:
        return md[md.index("## Table 1"):md.index("## Model sizes")].replace(str(ref), "").replace(str(exp), "")

    assert tables((exp / "RESULTS.md").read_text()) == tables((ref / "RESULTS.md").read_text())


def test_killed_in_every_gmm_stage_ends_as_the_uninterrupted_run(tiny_recipe_exp, tiny_corpus, tmp_path):
    from asr_kd.gmm.ali_io import load_alignment_cuts
    from asr_kd.utils.fingerprint import experiment_fingerprint

    exp = tmp_path / "killed"
    exp.mkdir()
    killed = _kill_inside_each_stage(exp, tiny_corpus, [1, 2, 3], _stage_seconds(tiny_recipe_exp / "log" / "run.log"),
                                     2, "--stop-stage", "3")
    assert sorted(killed) == [1, 2, 3], killed
    ours = experiment_fingerprint(exp, tiny_corpus)
    ref = experiment_fingerprint(tiny_recipe_exp, tiny_corpus)
    for name in ("features", "lexicon and L", "LM (G.fst)", "GMM mono", "GMM tri1", "GMM tri2",
                 "decoding graph (HCLG)"):
        assert ours[name] is not None and ours[name] == ref[name], f"{name} differs after the kills"
    for part in ("train-clean-100", "dev-clean", "test-clean"):
        ali, ref_ali = ({c.id: c.load_custom("pdf_ids") for c in load_alignment_cuts(e / "gmm" / "tri2" / "ali", part)}
                        for e in (exp, tiny_recipe_exp))
        assert ali and ali.keys() == ref_ali.keys(), part
        assert all(np.array_equal(ali[k], ref_ali[k]) for k in ali), f"{part}: tri2 alignments differ after the kills"
