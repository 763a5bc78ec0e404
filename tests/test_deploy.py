"""Deployment gate: exported models must give PyTorch's log-posteriors on real utterances, or fail loudly."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from asr_kd.bin import decode_nnet, export_model, frame_accuracy
from asr_kd.decode.scorer import HybridScorer
from asr_kd.data.frame_bank import FrameBank
from asr_kd.models import FrameClassifier
from asr_kd.models.export import TORCHSCRIPT_CONFIG, export_onnx, export_torchscript
from asr_kd.models.parity import DEFAULT_TOLERANCE, check_parity
from asr_kd.report.deploy_table import HEADER, deploy_table
from tests.markdown_table import table_rows


@pytest.fixture(scope="module")
def trained(tiny_recipe_exp):
    """The tiny recipe's trained baseline and its dev frame bank (real utterances)."""
    path = tiny_recipe_exp / "nnet" / "baseline" / "final.pt"
    return path, FrameClassifier.load(path).eval(), FrameBank.load(tiny_recipe_exp / "bank" / "dev")


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    path, model, _ = trained
    out = tmp_path_factory.mktemp("deploy")
    return export_onnx(model, out / "model.onnx"), export_torchscript(model, out / "model.ts.pt")


def _perturbed_onnx(src, dst) -> None:
    """Copy of an exported ONNX file with its largest weight matrix moved by 1e-2 (metadata kept)."""
    proto = onnx.load(str(src))
    init = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = numpy_helper.to_array(init).copy()
    arr += np.float32(1e-2) * np.random.default_rng(0).standard_normal(arr.shape).astype(np.float32)
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(proto, str(dst))


def _perturbed_torchscript(src, dst) -> None:
    """Copy of an exported TorchScript file with one weight matrix moved by 1e-2 (config kept)."""
    extra = {TORCHSCRIPT_CONFIG: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(src), _extra_files=extra)
        weight = next(p for p in module.parameters() if p.dim() == 2)
        with torch.no_grad():
            weight.add_(1e-2 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
        torch.jit.save(module, str(dst), _extra_files=extra)


def test_exports_of_a_trained_model_pass_on_real_utterances(trained, exported):
    _, model, bank = trained
    reports = check_parity(model, exported, bank, num_utterances=6)
    assert [r.runtime for r in reports] == ["onnx", "torchscript"]
    for r in reports:
        assert r.passed, r
        assert r.utterances == 6 and r.frames == sum(
            int(bank.utt_offsets[u + 1] - bank.utt_offsets[u]) for u in np.linspace(0, bank.num_utterances - 1, 6).round().astype(int))
        # Same fp32 network: far inside the tolerance, not merely under it.
        assert r.max_abs_diff < DEFAULT_TOLERANCE / 10


def test_a_perturbed_export_fails_the_check(trained, exported, tmp_path):
    _, model, bank = trained
    bad_onnx, bad_ts = tmp_path / "bad.onnx", tmp_path / "bad.ts.pt"
    _perturbed_onnx(exported[0], bad_onnx)
    _perturbed_torchscript(exported[1], bad_ts)
    reports = check_parity(model, [bad_onnx, bad_ts], bank, num_utterances=3)
    for r in reports:
        assert not r.passed, r
        assert r.max_abs_diff > 10 * DEFAULT_TOLERANCE


def test_cli_gate_exits_nonzero_on_a_perturbed_file_and_zero_on_good_ones(trained, exported, tmp_path, capsys):
    path, _, bank = trained
    good = ["--model", str(path), "--onnx", str(exported[0]), "--torchscript", str(exported[1]),
            "--check-parity", "--frame-bank", str(bank.directory), "--parity-utterances", "3",
            "--parity-out", str(tmp_path / "parity.json")]
    assert export_model.main(good) == 0
    record = json.loads((tmp_path / "parity.json").read_text())
    assert [r["passed"] for r in record["reports"]] == [True, True]
    bad = tmp_path / "bad.onnx"
    _perturbed_onnx(exported[0], bad)
    capsys.readouterr()
    # The file exists, so it is kept (not re-exported) and only checked: the gate must catch it.
    assert export_model.main(["--model", str(path), "--onnx", str(bad), "--check-parity",
                              "--frame-bank", str(bank.directory), "--parity-utterances", "3"]) == 2
    assert "parity check failed" in capsys.readouterr().err
    assert export_model.main(["--model", str(path), "--onnx", str(bad), "--check-parity"]) == 2


def test_onnx_decoder_gives_pytorch_scores_with_fixed_threads(trained, exported, tiny_recipe_exp):
    path, _, bank = trained
    torch_scorer = HybridScorer([path], torch.device("cpu"))
    onnx_scorer = HybridScorer([exported[0]], torch.device("cpu"), num_threads=1)
    assert onnx_scorer.models[0].session.get_session_options().intra_op_num_threads == 1
    feats, _ = bank.utterance(0)
    a, b = torch_scorer.log_posteriors(feats), onnx_scorer.log_posteriors(feats)
    assert np.abs(a - b).max() < DEFAULT_TOLERANCE
    assert np.allclose(torch_scorer.log_priors, onnx_scorer.log_priors)


def test_deploy_table_reads_back_what_each_deploy_step_wrote(trained, tiny_recipe_exp, tmp_path):
    """DEPLOY.md as run_deploy.sh's steps leave it: exports with their parity record, a test frame accuracy and an
    onnxruntime decode of the baseline; the ensemble is two exported members; a decode never run reads '–'."""
    path, model, _ = trained
    src, exp = tiny_recipe_exp, tmp_path / "deploy"
    for name in ("baseline", "member1", "member2"):
        assert export_model.main([
            "--model", str(path), "--onnx", str(exp / "export" / name / "model.onnx"),
            "--torchscript", str(exp / "export" / name / "model.ts.pt"), "--check-parity",
            "--frame-bank", str(src / "bank" / "dev"), "--parity-utterances", "2",
            "--parity-out", str(exp / "results" / f"parity_{name}.json")]) == 0
    assert frame_accuracy.main(["--model", str(path), "--frame-bank", str(src / "bank" / "test"),
                                "--output", str(exp / "results" / "acc_baseline_test.json"), "--device", "cpu"]) == 0
    assert decode_nnet.main([
        "--model", str(exp / "export" / "baseline" / "model.onnx"), "--graph-dir", str(src / "gmm/tri2/graph"),
        "--transition-model", str(src / "gmm/tri2/final.mdl"), "--cmvn", str(src / "bank/cmvn.json"),
        "--dev-cuts", str(src / "gmm/tri2/ali/cuts_dev-clean.jsonl.gz"),
        "--test-cuts", str(src / "gmm/tri2/ali/cuts_test-clean.jsonl.gz"), "--lm-weights", "10",
        "--beam", "8", "--max-active", "700", "--num-threads", "1", "--device", "cpu",
        "--out-dir", str(exp / "decode" / "baseline_onnx")]) == 0

    text = deploy_table(exp, ["baseline", "ensemble"], ["member1", "member2"], src)
    rows = table_rows(text)
    assert rows[0] == HEADER
    base, ens = (dict(zip(HEADER, r)) for r in rows[1:3])
    weights = sum(p.numel() for p in model.parameters())
    assert base["params"] == f"{weights:,}" and ens["params"] == f"{2 * weights:,}"
    onnx_bytes = (exp / "export" / "baseline" / "model.onnx").stat().st_size
    assert float(base["ONNX MB"]) == pytest.approx(onnx_bytes / 1e6, abs=0.005)
    assert float(ens["ONNX MB"]) == pytest.approx(2 * onnx_bytes / 1e6, abs=0.01)
    parity = json.loads((exp / "results" / "parity_baseline.json").read_text())["reports"]
    for runtime, column in (("onnx", "max abs Δ log p ONNX"), ("torchscript", "max abs Δ log p TorchScript")):
        worst = max(r["max_abs_diff"] for r in parity if r["runtime"] == runtime)
        assert float(base[column]) == pytest.approx(worst, rel=0.05) and float(base[column]) < DEFAULT_TOLERANCE
    acc = json.loads((exp / "results" / "acc_baseline_test.json").read_text())["accuracy"]
    assert float(base["test frame acc %"]) == pytest.approx(100 * acc, abs=0.005)
    dec = json.loads((exp / "decode" / "baseline_onnx" / "results.json").read_text())["test"]
    assert float(base["test WER % (onnxruntime)"]) == pytest.approx(dec["wer"], abs=0.005)
    main_run = json.loads((src / "decode" / "baseline" / "results.json").read_text())["test"]
    assert float(base["main run's test WER %"]) == pytest.approx(main_run["wer"], abs=0.005)
    audio_s = dec["data"]["hours"] * 3600
    assert float(base["network RTF onnxruntime"]) == pytest.approx(dec["nnet_seconds"] / audio_s, abs=5e-5)
    assert float(base["decode RTF onnxruntime"]) == pytest.approx(
        (dec["nnet_seconds"] + dec["search_seconds"]) / audio_s, abs=5e-5)
    # Not run: the PyTorch decodes, the ensemble's accuracy and decode.
    assert base["test WER % (PyTorch)"] == base["network RTF PyTorch"] == "–"
    assert ens["test frame acc %"] == ens["test WER % (onnxruntime)"] == "–"
