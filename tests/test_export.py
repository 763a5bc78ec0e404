"""Deployment exports: ONNX (onnxruntime) and TorchScript give PyTorch's posteriors; metadata; the CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import torch

from asr_kd.bin import export_model
from asr_kd.decode.scorer import HybridScorer
from asr_kd.models import FrameClassifier, shape_config
from asr_kd.models.export import (ONNX_OPSET, OnnxFrameClassifier, export_onnx, export_torchscript,
                                  load_torchscript)
from asr_kd.utils.errors import InputError

# The exports run the same fp32 maths with other kernels (onnxruntime's MLAS GEMM, another
# summation order): each output differs by a few ulps of the values summed, ~1e-6 relative for
# a 1040-long dot product of O(1) terms. 1e-5 relative (+1e-6 absolute, for probabilities near 0)
# leaves 10x room for that and still catches any real difference (a missing layer, a wrong
# norm, a transposed weight all move posteriors by >1e-2).
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def model() -> FrameClassifier:
    """The tiny shape with norm layers and a lifter (so their export is covered), random weights and priors."""
    torch.manual_seed(0)
    config = dataclasses.replace(shape_config("tiny"), num_outputs=97, norm="layernorm", input_norm="batchnorm",
                                 input_lifter=20)
    net = FrameClassifier(config)
    bn = net.input_norm
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    net.set_priors(np.arange(1, config.num_outputs + 1))
    return net.eval()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    return export_onnx(model, out / "m.onnx"), export_torchscript(model, out / "m.ts.pt")


def _feats(num_frames: int = 57, dim: int = 40) -> torch.Tensor:
    return torch.randn(num_frames, dim, generator=torch.Generator().manual_seed(1))


def test_onnx_and_torchscript_posteriors_match_pytorch(model, exported):
    onnx_path, ts_path = exported
    feats = _feats()
    # Reference in float64: both fp32 paths are compared with the exact answer, not with each other.
    ref = model.double().posteriors(feats.double()).float()
    model.float()
    ort_model = OnnxFrameClassifier(onnx_path)
    ts_module, _ = load_torchscript(ts_path)
    from asr_kd.models.context import splice_utterance

    with torch.no_grad():
        ts_post = torch.softmax(ts_module(splice_utterance(feats, 20, 5)), dim=-1)
    for got in (model.posteriors(feats), ort_model.posteriors(feats), ts_post):
        assert torch.allclose(got, ref, rtol=RTOL, atol=ATOL)
    assert ort_model.log_posteriors(feats, temperature=2.0).exp().sum(-1).sub(1).abs().max() < 1e-5


def test_onnx_batch_axis_is_dynamic(model, exported):
    ort_model = OnnxFrameClassifier(exported[0])
    windows = torch.randn(37, model.config.context, model.config.feat_dim)
    with torch.no_grad():
        expected = model(windows)
    assert torch.allclose(ort_model(windows), expected, rtol=RTOL, atol=1e-5)
    assert torch.allclose(ort_model(windows[:1]), expected[:1], rtol=RTOL, atol=1e-5)
    # The graph itself declares a symbolic batch dimension and the opset we state.
    proto = onnx.load(str(exported[0]))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert any(o.domain in ("", "ai.onnx") and o.version == ONNX_OPSET for o in proto.opset_import)


def test_metadata_round_trips_config_and_priors(model, exported):
    ort_model = OnnxFrameClassifier(exported[0])
    _, ts_config = load_torchscript(exported[1])
    assert ort_model.config == model.config == ts_config
    # Priors from counts 1..C, add-one smoothed: p_c = (c + 1) / (C(C+1)/2 + C), stored bit-exactly.
    c = model.config.num_outputs
    expected = np.log((np.arange(1, c + 1) + 1.0) / (c * (c + 1) / 2 + c))
    assert torch.equal(ort_model.log_priors, model.log_priors.float())
    assert np.allclose(ort_model.log_priors.numpy(), expected, atol=1e-6)
    assert ort_model.num_params == sum(p.numel() for p in model.parameters())


def test_wrong_feature_dim_is_a_clear_error(exported):
    ort_model = OnnxFrameClassifier(exported[0])
    with pytest.raises(ValueError, match=r"expected \(T, 40\) features, got \(57, 39\)"):
        ort_model.log_posteriors(_feats(dim=39))
    with pytest.raises(ValueError, match=r"expects windows of shape \(B, 26, 40\)"):
        ort_model(torch.zeros(4, 26, 39))


def test_a_file_without_our_metadata_is_refused(tmp_path):
    bare = tmp_path / "bare.onnx"
    io = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 3]) for n in ("x", "y")]
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "bare", io[:1], io[1:])
    onnx.save(onnx.helper.make_model(graph), str(bare))
    with pytest.raises(InputError, match="not written by export_onnx"):
        OnnxFrameClassifier(bare)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a readable ONNX model"):
        OnnxFrameClassifier(tmp_path / "junk.onnx")


def test_hybrid_scorer_takes_an_onnx_model_in_place_of_the_checkpoint(model, exported, tmp_path):
    ckpt = tmp_path / "m.pt"
    model.save(ckpt)
    feats = _feats().numpy()
    torch_scorer = HybridScorer([ckpt], torch.device("cpu"))
    onnx_scorer = HybridScorer([exported[0]], torch.device("cpu"))
    assert np.array_equal(onnx_scorer.log_priors, torch_scorer.log_priors)
    assert onnx_scorer.num_params == torch_scorer.num_params
    assert np.allclose(onnx_scorer.log_posteriors(feats), torch_scorer.log_posteriors(feats), rtol=RTOL, atol=1e-5)
    mixed = HybridScorer([ckpt, exported[0]], torch.device("cpu"))
    assert np.allclose(mixed.log_posteriors(feats), torch_scorer.log_posteriors(feats), rtol=RTOL, atol=1e-5)


def test_cli_exports_both_formats_and_reports_the_difference(model, tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    model.save(ckpt)
    argv = ["--model", str(ckpt), "--onnx", str(tmp_path / "o.onnx"), "--torchscript", str(tmp_path / "o.ts.pt")]
    assert export_model.main(argv) == 0
    out = capsys.readouterr().out
    diffs = [float(line.split("= ")[1].split()[0]) for line in out.splitlines() if "max |posterior" in line]
    assert len(diffs) == 2 and max(diffs) < 1e-5
    assert OnnxFrameClassifier(tmp_path / "o.onnx").config == model.config
    assert export_model.main(["--model", str(tmp_path / "none.pt"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "no such model checkpoint" in capsys.readouterr().err
