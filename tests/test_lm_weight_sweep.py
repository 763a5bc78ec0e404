"""LM-weight sweeps that extend past an edge holding the best weight, so the choice is not at an edge."""

from __future__ import annotations

import json
import shlex

import pytest

from asr_kd.bin import decode_nnet
from asr_kd.score.wer import weight_beyond_edge


@pytest.mark.parametrize("weights, best, expected", [
    (["9", "11", "13"], "9", "7"),      # best at the low edge: one spacing below
    (["9", "11", "13"], "13", "15"),    # best at the high edge: one spacing above
    (["9", "11", "13"], "11", None),    # inside: nothing to add
    ([8.0, 10.0, 14.0], 14.0, "16"),    # the smallest spacing is the step
    (["1", "3"], "1", None),            # below the lowest weight the step would reach 0 or less
    (["10"], "10", None),               # one weight: no spacing to step by
])
def test_weight_beyond_edge(weights, best, expected):
    assert weight_beyond_edge(weights, best) == expected


def test_decode_nnet_extends_the_sweep_until_the_best_weight_is_inside_it(tiny_recipe_exp, tmp_path):
    recorded = json.loads((tiny_recipe_exp / "decode" / "baseline" / "results.json").read_text())
    words = shlex.split(recorded["command"])
    search = [a for opt in ("--beam", "--max-active", "--decoder") if opt in words
              for a in (opt, words[words.index(opt) + 1])]
    # Two weights above the recipe's choice: the better one is always at an edge of the sweep.
    low = float(recorded["lmwt"]) + 8
    common = ["--model", str(tiny_recipe_exp / "nnet" / "baseline" / "final.pt"),
              "--graph-dir", str(tiny_recipe_exp / "gmm" / "tri2" / "graph"),
              "--transition-model", str(tiny_recipe_exp / "gmm" / "tri2" / "final.mdl"),
              "--cmvn", str(tiny_recipe_exp / "bank" / "cmvn.json"),
              "--dev-cuts", str(tiny_recipe_exp / "gmm" / "tri2" / "ali" / "cuts_dev-clean.jsonl.gz"),
              "--lm-weights", f"{low:g}", f"{low + 4:g}", *search, "--device", "cpu"]

    assert decode_nnet.main([*common, "--out-dir", str(tmp_path / "fixed")]) == 0
    fixed = json.loads((tmp_path / "fixed" / "results.json").read_text())
    assert sorted(fixed["dev_wer_by_lmwt"], key=float) == [f"{low:g}", f"{low + 4:g}"]

    assert decode_nnet.main([*common, "--extend-lm-weights", "4", "--out-dir", str(tmp_path / "extended")]) == 0
    extended = json.loads((tmp_path / "extended" / "results.json").read_text())
    tried = sorted(extended["dev_wer_by_lmwt"], key=float)
    # Every added weight is one spacing (4) past the previous edge, and each has its scoring file.
    assert {f"{low:g}", f"{low + 4:g}"} <= set(tried) and len(tried) > 2
    values = [float(w) for w in tried]
    assert all(b - a == 4 for a, b in zip(values, values[1:]))
    assert all((tmp_path / "extended" / "scoring" / f"wer_{w}").is_file() for w in tried)
    # The sweep stopped because the best weight came inside it, or because it ran out of tries.
    best = extended["lmwt"]
    wers = extended["dev_wer_by_lmwt"]
    assert wers[best] == min(wers.values())
    assert weight_beyond_edge(tried, best) is None or len(tried) == 6


@pytest.mark.parametrize("extra, says", [
    (["--lm-weights", "9", "x"], "--lm-weights must be numbers"),
    (["--lm-weights", "9,11"], "--lm-weights must be numbers separated by spaces"),  # one list form
    (["--lm-weights", "0", "9"], "--lm-weights must be positive"),
    (["--lm-weights", "9", "11", "--extend-lm-weights", "-1"], "--extend-lm-weights must be >= 0"),
])
def test_bad_lm_weight_options_are_refused_with_status_2(tmp_path, capsys, extra, says):
    argv = ["--model", str(tmp_path / "m.pt"), "--graph-dir", str(tmp_path), "--transition-model",
            str(tmp_path / "final.mdl"), "--out-dir", str(tmp_path / "out"), "--device", "cpu", *extra]
    assert decode_nnet.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("asr-kd decode-nnet: error:") and says in err[-1]


def test_decode_gmm_refuses_bad_lm_weight_options_as_decode_nnet_does(tmp_path, capsys):
    from asr_kd.bin import decode_gmm

    for extra, says in ((["--lm-weights", "0", "9"], "--lm-weights must be positive"),
                        (["--lm-weights", "9,11"], "--lm-weights must be numbers separated by spaces"),
                        (["--lm-weights", "9", "11", "--extend-lm-weights", "-1"], "--extend-lm-weights must be >= 0")):
        assert decode_gmm.main(["--exp-dir", str(tmp_path), "--graph-dir", str(tmp_path), *extra]) == 2
        assert says in capsys.readouterr().err
