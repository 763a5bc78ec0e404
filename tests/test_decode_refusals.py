"""Decoding refuses what would decode garbage: exit status 2 and one line naming the file and the problem."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from lhotse import load_manifest

from asr_kd.bin import decode_nnet
from asr_kd.data.cmvn import CmvnStats
from asr_kd.data.frame_bank import FrameBank
from asr_kd.models import FrameClassifier
from asr_kd.utils.errors import InputError


def _decode(exp: Path, model: Path, out: Path, cmvn: Path | None) -> int:
    return decode_nnet.main(["--model", str(model), "--graph-dir", str(exp / "gmm" / "tri2" / "graph"),
                             "--transition-model", str(exp / "gmm" / "tri2" / "final.mdl"),
                             *(["--cmvn", str(cmvn)] if cmvn else []),
                             "--dev-cuts", str(exp / "gmm" / "tri2" / "ali" / "cuts_dev-clean.jsonl.gz"),
                             "--lm-weights", "10", "--out-dir", str(out), "--device", "cpu", "--amp", "none"])


def _narrower_cmvn(exp: Path, path: Path) -> Path:
    """The recipe's stats without their last dimension."""
    stats = CmvnStats.load(exp / "bank" / "cmvn.json")
    CmvnStats(stats.mean[:-1], stats.std[:-1], stats.count, stats.mode).save(path)
    return path


@pytest.mark.parametrize("case", ["cmvn dim", "pdf count", "feature dim", "nan scores"])
def test_decode_refuses_with_status_2_and_a_line_naming_the_problem(tiny_recipe_exp, tmp_path, capsys, case):
    exp = tiny_recipe_exp
    baseline = FrameClassifier.load(exp / "nnet" / "baseline" / "final.pt")
    config = baseline.config
    model, cmvn = tmp_path / "model.pt", exp / "bank" / "cmvn.json"
    if case == "cmvn dim":
        baseline.save(model)
        cmvn = _narrower_cmvn(exp, tmp_path / "cmvn.json")
        expected = [f"{cmvn}: CMVN stats of dim {config.feat_dim - 1}", f"takes {config.feat_dim}-dim features"]
    elif case == "pdf count":
        FrameClassifier(replace(config, num_outputs=config.num_outputs + 1)).save(model)
        tm = exp / "gmm" / "tri2" / "final.mdl"
        expected = [f"{tm}: {config.num_outputs} pdfs, the model has {config.num_outputs + 1} outputs"]
    elif case == "feature dim":
        FrameClassifier(replace(config, feat_dim=config.feat_dim + 1)).save(model)
        cmvn = None  # the stats would be refused first (their dim is the features')
        expected = [f"features of dim {config.feat_dim}, the model expects {config.feat_dim + 1}"]
    else:
        with torch.no_grad():
            baseline.output.bias[3] = float("nan")
        baseline.save(model)
        expected = ["the model's scores hold NaN or inf", f"--model {model}"]
    capsys.readouterr()
    assert _decode(exp, model, tmp_path / "decode", cmvn) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error: " in line]
    assert errors == err[-1:], err  # one line, the last
    for part in expected:
        assert part in errors[0], (part, errors[0])
    assert not (tmp_path / "decode" / "results.json").exists()


def test_a_frame_bank_refuses_cmvn_of_another_dimension_naming_the_cut_and_the_stats(tiny_recipe_exp, tmp_path):
    cuts = load_manifest(tiny_recipe_exp / "gmm" / "tri2" / "ali" / "cuts_dev-clean.jsonl.gz")
    cmvn = _narrower_cmvn(tiny_recipe_exp, tmp_path / "cmvn.json")
    dim = json.loads((tiny_recipe_exp / "bank" / "dev" / "manifest.json").read_text())["feat_dim"]
    with pytest.raises(InputError, match=rf"cut \S+: features of dim {dim}, the CMVN stats {cmvn} have dim {dim - 1}"):
        FrameBank.build(cuts, tmp_path / "bank", cmvn=cmvn, num_classes=10)
