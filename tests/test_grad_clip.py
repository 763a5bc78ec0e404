"""The trainer's gradient clipping is torch's clip_grad_norm_, with the CPU's rescale skipped when not needed."""

import pytest
import torch
from torch import nn

from asr_kd.train.train import clip_gradients


def _twin_nets_with_gradients(input_scale: float) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 5))
    b = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 5))
    b.load_state_dict(a.state_dict())
    x = torch.randn(64, 30) * input_scale
    for net in (a, b):
        net(x).sum().backward()
    return a, b


@pytest.mark.parametrize("input_scale", [0.01, 100.0])
def test_clip_gradients_equals_clip_grad_norm_below_and_above_the_limit(input_scale):
    reference, ours = _twin_nets_with_gradients(input_scale)
    norm_before = nn.utils.get_total_norm([p.grad for p in ours.parameters()])
    nn.utils.clip_grad_norm_(reference.parameters(), 5.0)
    clip_gradients(ours, 5.0)
    for p, q in zip(reference.parameters(), ours.parameters()):
        assert torch.equal(p.grad, q.grad)
    norm_after = nn.utils.get_total_norm([p.grad for p in ours.parameters()])
    # The two cases are real: one is left alone, the other is scaled down to the limit.
    assert (norm_before <= 5.0 and norm_after == norm_before) or (norm_before > 5.0 and norm_after <= 5.0 + 1e-4)


def test_clip_gradients_spreads_a_nan_norm_as_clip_grad_norm_does():
    reference, ours = _twin_nets_with_gradients(1.0)
    for net in (reference, ours):
        net[0].bias.grad[0] = float("nan")  # one bad gradient: the total norm is NaN
    nn.utils.clip_grad_norm_(reference.parameters(), 5.0)
    clip_gradients(ours, 5.0)
    assert all(p.grad.isnan().all() for p in reference.parameters())
    assert all(q.grad.isnan().all() for q in ours.parameters())
