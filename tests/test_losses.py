"""Distillation losses and schedules: closed-form gradients, limits, dtype handling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from asr_kd.distill.losses import (
    distillation_loss,
    hard_cross_entropy,
    hard_cross_entropy_and_correct,
    logit_matching_loss,
    soft_cross_entropy,
    soft_kl_divergence,
)
from asr_kd.distill.schedules import (
    ConstantSchedule,
    DistillationSchedule,
    LinearRampSchedule,
    StepSchedule,
    parse_schedule,
)
from asr_kd.utils.errors import InputError


def _softmax_by_hand(z: torch.Tensor) -> torch.Tensor:
    """exp / sum exp, written out so the tests do not lean on the code's log_softmax."""
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def _batch(b: int = 6, c: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, c, generator=g, dtype=torch.float64) * 2
    p = _softmax_by_hand(torch.randn(b, c, generator=g, dtype=torch.float64) * 2)
    y = torch.randint(0, c, (b,), generator=g)
    return z, p, y


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0, 10.0])
@pytest.mark.parametrize("loss_fn", [soft_cross_entropy, soft_kl_divergence])
def test_soft_term_gradient_is_t_times_q_minus_p(loss_fn, temperature):
    # d/dz [T^2 * -sum p log softmax(z/T)] = T^2 * (1/T) (softmax(z/T) - p); the batch mean adds 1/B.
    z, p, _ = _batch()
    z.requires_grad_(True)
    loss_fn(z, p, temperature).backward()
    expected = temperature * (_softmax_by_hand(z.detach() / temperature) - p) / z.shape[0]
    assert torch.allclose(z.grad, expected, atol=1e-12)


def test_cross_entropy_and_kl_forms_differ_by_teacher_entropy_times_t_squared():
    z, p, _ = _batch()
    t = 2.0
    entropy = -(p * torch.log(p)).sum(-1).mean()
    ce = soft_cross_entropy(z, p, t)
    kl = soft_kl_divergence(z, p, t)
    assert torch.allclose(ce - kl, t * t * entropy, atol=1e-10)
    # KL is zero when the student matches the teacher at T: z/T = log p (up to a constant).
    assert abs(float(soft_kl_divergence(t * torch.log(p), p, t))) < 1e-10


def test_soft_loss_equals_hard_ce_for_one_hot_teacher():
    z, _, y = _batch()
    one_hot = F.one_hot(y, z.shape[1]).double()
    soft = soft_cross_entropy(z, one_hot, 1.0)
    hard_by_hand = -torch.log(_softmax_by_hand(z)[torch.arange(len(y)), y]).mean()
    assert torch.allclose(soft, hard_by_hand, atol=1e-12)
    assert torch.allclose(hard_cross_entropy(z, y), hard_by_hand, atol=1e-12)


@pytest.mark.parametrize("w", [0.0, 0.25, 0.5, 2.0])
def test_distillation_loss_is_soft_plus_weighted_hard(w):
    z, p, y = _batch()
    t = 2.0
    loss, stats = distillation_loss(z, y, p, temperature=t, hard_weight=w)
    soft = -t * t * (p * torch.log(_softmax_by_hand(z / t))).sum(-1).mean()
    hard = -torch.log(_softmax_by_hand(z)[torch.arange(len(y)), y]).mean()
    assert torch.allclose(loss, soft + w * hard, atol=1e-10)
    assert abs(float(stats["soft_ce"]) - float(soft)) < 1e-6
    assert abs(float(stats["hard_ce"]) - float(hard)) < 1e-6
    entropy = -(p * torch.log(p)).sum(-1).mean()
    assert abs(float(stats["soft_kl"]) - float(soft - t * t * entropy)) < 1e-6


def test_hard_ce_gradient_is_softmax_minus_one_hot_and_unlabelled_frames_get_none():
    z, _, y = _batch()
    y = y.clone()
    y[1] = -1
    z.requires_grad_(True)
    hard_cross_entropy(z, y).backward()
    expected = (_softmax_by_hand(z.detach()) - F.one_hot(y.clamp_min(0), z.shape[1]).double()) / len(y)
    expected[1] = 0
    assert torch.allclose(z.grad, expected, atol=1e-12)


def test_hard_ce_counter_counts_first_maxima_and_bf16_gets_bf16_gradients():
    z = torch.tensor([[1.0, 3.0, 3.0, 0.0],  # a tie: the first maximum (1) is the arg-max
                      [1.0, 3.0, 3.0, 0.0],
                      [5.0, 0.0, 0.0, 0.0],
                      [5.0, 0.0, 0.0, 0.0]])
    y = torch.tensor([1, 2, 0, -1])  # hit, tie lost, hit, unlabelled
    loss, correct = hard_cross_entropy_and_correct(z.to(torch.bfloat16), y)
    assert correct.dtype == torch.int64 and int(correct) == 2
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, F.cross_entropy(z, y, ignore_index=-1, reduction="sum") / 4, atol=1e-6)
    zb = torch.randn(64, 300).to(torch.bfloat16).requires_grad_(True)
    yb = torch.randint(0, 300, (64,))
    loss, correct = hard_cross_entropy_and_correct(zb, yb)
    loss.backward()
    assert zb.grad.dtype == torch.bfloat16
    assert int(correct) == int((zb.detach().float().argmax(-1) == yb).sum())
    zf = zb.detach().float().requires_grad_(True)
    F.cross_entropy(zf, yb).backward()
    assert torch.allclose(zb.grad.float(), zf.grad, atol=1e-4)
    kept = zf.detach().clone()
    hard_cross_entropy_and_correct(zf, yb)[0].backward()
    assert torch.equal(zf.detach(), kept)  # fp32 logits: the loss works on a copy, not on them


def test_unlabelled_frames_add_only_their_soft_term():
    z, p, y = _batch()
    y = y.clone()
    y[::3] = -1  # transfer-set frames: no alignment
    labelled = y >= 0
    per_frame_ce = -torch.log(_softmax_by_hand(z)[torch.arange(len(y)), y.clamp_min(0)])
    # Each frame's loss is its soft term plus, where labelled, the weighted hard term; the batch averages all frames.
    expected_hard = (per_frame_ce * labelled).sum() / len(y)
    assert torch.allclose(hard_cross_entropy(z, y), expected_hard, atol=1e-12)
    loss, _ = distillation_loss(z, y, p, temperature=2.0, hard_weight=0.5)
    soft = soft_cross_entropy(z, p, 2.0)
    assert torch.allclose(loss, soft + 0.5 * expected_hard, atol=1e-10)


def test_no_teacher_means_hard_cross_entropy_only():
    z, _, y = _batch()
    loss, stats = distillation_loss(z, y, None, temperature=2.0, hard_weight=0.5)
    assert torch.allclose(loss, F.cross_entropy(z, y), atol=1e-12)
    assert set(stats) == {"loss", "hard_ce", "correct"}
    assert int(stats["correct"]) == int((z.argmax(-1) == y).sum())


def test_large_logits_do_not_overflow():
    z = torch.tensor([[1000.0, 0.0, -1000.0]])
    p = torch.tensor([[0.5, 0.5, 0.0]])
    loss, _ = distillation_loss(z, torch.tensor([0]), p, temperature=1.0)
    # CE = 0.5 * 0 + 0.5 * 1000 for the soft term, hard CE = 0.
    assert torch.isfinite(loss) and abs(float(loss) - 500.0) < 1e-3


@pytest.mark.parametrize("temperature", [100.0, 1000.0])
def test_high_temperature_distillation_gradient_approaches_logit_matching(temperature):
    # Hinton et al. eq. 3 with the T^2 factor: for zero-mean logits z (student) and v (teacher),
    # T (q - p) = (z - v)/N + c/(2 N T) + O(|z|^3 / (N T^2)), with
    # c_i = (z_i^2 - v_i^2) - (mean z^2 - mean v^2) from expanding exp(x/T) to second order.
    g = torch.Generator().manual_seed(1)
    n = 12
    z = torch.randn(5, n, generator=g, dtype=torch.float64)
    v = torch.randn(5, n, generator=g, dtype=torch.float64)
    z, v = z - z.mean(-1, keepdim=True), v - v.mean(-1, keepdim=True)
    p = _softmax_by_hand(v / temperature)

    z_kd = z.clone().requires_grad_(True)
    soft_cross_entropy(z_kd, p, temperature).backward()
    z_lm = z.clone().requires_grad_(True)
    logit_matching_loss(z_lm, v).backward()
    b = z.shape[0]
    kd, lm = z_kd.grad * b, z_lm.grad * b  # per-frame gradients

    assert torch.allclose(lm, (z - v) / n, atol=1e-15)  # logit matching's own gradient
    c = (z**2 - v**2) - ((z**2).mean(-1, keepdim=True) - (v**2).mean(-1, keepdim=True))
    scale = max(float(z.abs().max()), float(v.abs().max()))
    third_order = 10 * scale**3 / (n * temperature**2)
    assert torch.allclose(kd, lm + c / (2 * n * temperature), atol=third_order)
    # So the logit-matching gradient alone is off by at most the first-order term.
    assert ((kd - lm).abs() <= c.abs() / (2 * n * temperature) + third_order).all()


def test_logit_matching_loss_value():
    z = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    v = torch.tensor([[1.0, 0.0, 3.0, 2.0]])
    # 0.5 * mean((0, 2, 0, 2)^2) = 0.5 * 8 / 4 = 1
    assert abs(float(logit_matching_loss(z, v)) - 1.0) < 1e-7


def test_loss_under_bf16_autocast_is_fp32_and_matches_fp32_computation():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 10)
    x = torch.randn(8, 16)
    y = torch.randint(0, 10, (8,))
    p = torch.softmax(torch.randn(8, 10), -1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        loss, stats = distillation_loss(logits, y, p, temperature=2.0, hard_weight=0.5)
    assert loss.dtype == torch.float32 and stats["soft_ce"].dtype == torch.float32
    z = logits.detach().float()
    expected = -4.0 * (p * torch.log_softmax(z / 2, -1)).sum(-1).mean() + 0.5 * F.cross_entropy(z, y)
    assert torch.allclose(loss.detach(), expected, atol=1e-5)
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def test_teacher_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4), 2.0)


def test_early_stopped_distillation_switches_soft_term_off_after_its_epoch():
    schedule = DistillationSchedule(ConstantSchedule(2.0), ConstantSchedule(0.5), soft_until_epoch=3)
    assert [schedule.at(e).use_soft for e in range(1, 7)] == [True, True, True, False, False, False]
    assert all(schedule.at(e).temperature == 2.0 for e in range(1, 7))
    assert all(DistillationSchedule().at(e).use_soft for e in range(1, 50))


def test_linear_and_step_schedules():
    ramp = LinearRampSchedule(5.0, 1.0, 1, 5)
    assert [ramp(e) for e in range(0, 7)] == [5.0, 5.0, 4.0, 3.0, 2.0, 1.0, 1.0]
    step = StepSchedule((1, 4, 8), (5.0, 2.0, 1.0))
    assert [step(e) for e in (1, 3, 4, 7, 8, 20)] == [5.0, 5.0, 2.0, 2.0, 1.0, 1.0]


def test_parse_schedule_strings():
    assert parse_schedule("2")(7) == 2.0
    assert parse_schedule("linear:1:0:0:10")(5) == pytest.approx(0.5)
    assert parse_schedule("step:1=5,4=2")(4) == 2.0
    for bad in ("fast", "linear:1:2", "step:1=5,1=2", "linear:1:0:5:5"):
        with pytest.raises(InputError):
            parse_schedule(bad)
    assert math.isclose(DistillationSchedule(parse_schedule("linear:4:2:1:3")).at(2).temperature, 3.0)
