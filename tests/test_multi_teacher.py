"""Multi-teacher distillation with per-teacher weights: weighted means, the teacher, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asr_kd.bin import make_soft_targets
from asr_kd.data.frame_bank import FrameBank
from asr_kd.distill.ensemble import EnsembleTeacher, average_posteriors
from asr_kd.models import FrameClassifier, FrameClassifierConfig
from asr_kd.utils.errors import InputError

CONFIG = FrameClassifierConfig(num_layers=1, hidden_dim=16, left_context=2, right_context=1,
                               feat_dim=5, num_outputs=11)
T = 2.0


def _logits(m: int = 3, b: int = 7, c: int = 11) -> torch.Tensor:
    torch.manual_seed(0)
    return 3 * torch.randn(m, b, c)


def _members(n: int = 2) -> list[FrameClassifier]:
    out = []
    for m in range(n):
        torch.manual_seed(10 + m)
        out.append(FrameClassifier(CONFIG).eval())
    return out


@pytest.mark.parametrize("mean", ["arithmetic", "geometric"])
def test_weight_one_on_a_member_reproduces_that_member_alone(mean):
    z = _logits(m=2)
    weighted = average_posteriors(z, T, mean, weights=[1.0, 0.0])
    alone = torch.softmax(z[0] / T, dim=-1)
    assert torch.allclose(weighted, alone, atol=1e-6)
    # ...and not the other member: the weight did select one.
    assert not torch.allclose(weighted, torch.softmax(z[1] / T, dim=-1), atol=1e-3)


@pytest.mark.parametrize("mean", ["arithmetic", "geometric"])
def test_equal_weights_reproduce_the_unweighted_mean_exactly(mean):
    z = _logits()
    plain = average_posteriors(z, T, mean)
    for w in ([1.0, 1.0, 1.0], [0.2, 0.2, 0.2], torch.full((3,), 5.0)):
        assert torch.equal(average_posteriors(z, T, mean, weights=w), plain)


def test_weighted_arithmetic_mean_equals_a_hand_computation():
    z = _logits().double()
    w = [3.0, 1.0, 0.0]
    # By hand, in float64: 0.75 p1 + 0.25 p2 (weights 3:1:0 normalised), p_i = softmax(z_i / T).
    p = [torch.exp(zi / T) / torch.exp(zi / T).sum(-1, keepdim=True) for zi in z]
    expected = 0.75 * p[0] + 0.25 * p[1]
    got = average_posteriors(z.float(), T, "arithmetic", weights=w).double()
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(z.shape[1], dtype=torch.float64), atol=1e-6)


def test_weighted_geometric_mean_is_the_renormalised_weighted_product():
    z = _logits().double()
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    p = torch.softmax(z / T, dim=-1)
    prod = torch.prod(p ** w[:, None, None], dim=0)  # prod_i p_i^{w_i}, then renormalise
    expected = prod / prod.sum(-1, keepdim=True)
    got = average_posteriors(z.float(), T, "geometric", weights=w.tolist()).double()
    assert torch.allclose(got, expected, atol=1e-6)


def test_bad_weights_are_input_errors():
    z = _logits()
    for w in ([1.0, 2.0], [1.0, -1.0, 1.0], [0.0, 0.0, 0.0], [1.0, float("nan"), 1.0]):
        with pytest.raises(InputError):
            average_posteriors(z, T, "arithmetic", weights=w)
    with pytest.raises(InputError, match="2 ensemble weights given for 3 members"):
        EnsembleTeacher(_members(3), weights=[1, 2])


@pytest.mark.parametrize("path", ["mlp", "vmap", "loop"])
def test_weighted_teacher_matches_weighted_member_posteriors(path):
    members = _members(2)
    teacher = EnsembleTeacher(members, path=path, weights=[2.0, 6.0])
    assert teacher.weights == [0.25, 0.75]
    torch.manual_seed(1)
    x = torch.randn(9, CONFIG.context, CONFIG.feat_dim)
    with torch.no_grad():
        expected = 0.25 * torch.softmax(members[0](x) / T, -1) + 0.75 * torch.softmax(members[1](x) / T, -1)
    assert torch.allclose(teacher.soft_targets(x, T), expected, atol=1e-6)


def test_cli_records_teacher_weights_and_rejects_a_count_mismatch(tmp_path, capsys):
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(n, CONFIG.feat_dim)).astype(np.float32) for n in (8, 5)]
    labels = [rng.integers(0, CONFIG.num_outputs, size=len(f)) for f in feats]
    bank = FrameBank.from_arrays(feats, labels, ["u1", "u2"], tmp_path / "bank", num_classes=CONFIG.num_outputs)
    paths = []
    for i, m in enumerate(_members(2)):
        paths.append(tmp_path / f"m{i}.pt")
        m.save(paths[-1])
    base = ["--teacher", *map(str, paths), "--frame-bank", str(bank.directory), "--top-k", str(CONFIG.num_outputs),
            "--temperature", str(T), "--device", "cpu", "--amp", "none"]
    assert make_soft_targets.main([*base, "--teacher-weights", "1", "0", "--out-dir", str(tmp_path / "w")]) == 0
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["teacher"]["weights"] == [1.0, 0.0]
    # With all C classes kept, the stored targets are member 1's own distribution.
    from asr_kd.distill.soft_targets import SoftTargetStore

    store = SoftTargetStore.load(tmp_path / "w")
    got = store.lookup(torch.arange(bank.num_frames), "cpu")
    with torch.no_grad():
        x = bank.splice(torch.arange(bank.num_frames), CONFIG.left_context, CONFIG.right_context).float()
        alone = torch.softmax(_members(2)[0](x) / T, -1)
    assert torch.allclose(got, alone, atol=2e-3)  # fp16 storage
    assert make_soft_targets.main([*base, "--out-dir", str(tmp_path / "plain")]) == 0
    assert "weights" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())["teacher"]
    capsys.readouterr()
    assert make_soft_targets.main([*base, "--teacher-weights", "1", "--out-dir", str(tmp_path / "bad")]) == 2
    assert "--teacher-weights: 1 weights for 2" in capsys.readouterr().err
