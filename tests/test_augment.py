"""Training-window perturbations: masks, noise and mixup do what they say; an online teacher sees them too."""

from __future__ import annotations

import pytest
import torch

from asr_kd.train.augment import WindowAugment, parse_augment
from asr_kd.utils.errors import InputError


def test_parse_reads_every_field_and_refuses_unknown_ones():
    assert parse_augment("freq_mask=8,time_mask=5,noise=0.1,mixup=0.4") == WindowAugment(8, 5, 0.1, 0.4)
    assert not parse_augment("none").active and not parse_augment("").active
    assert parse_augment("noise=0.2").describe() == "noise=0.2"
    for bad in ("pitch=2", "noise", "freq_mask=x", "mixup=1.5"):
        with pytest.raises(InputError):
            parse_augment(bad)


def _zero_runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of zeros in a 1-d tensor."""
    runs, length = [], 0
    for v in row.tolist() + [1.0]:
        if v == 0.0:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    return runs


def test_masks_zero_one_band_of_bins_and_one_span_of_frames_per_window():
    torch.manual_seed(0)
    ones = torch.ones(200, 26, 40)
    by_freq = WindowAugment(freq_mask=8)(ones)
    for window in by_freq:
        runs = _zero_runs(window[0])
        assert len(runs) <= 1 and sum(runs) <= 8
        assert torch.equal(window, window[:1].expand_as(window))  # the same bins in every frame
    assert (by_freq == 0).any()
    by_time = WindowAugment(time_mask=5)(ones)
    for window in by_time:
        runs = _zero_runs(window[:, 0])
        assert len(runs) <= 1 and sum(runs) <= 5
    assert (by_time == 0).any()


def test_mixup_mixes_in_at_most_its_weight_of_another_window():
    torch.manual_seed(0)
    windows = torch.arange(64, dtype=torch.float32)[:, None, None].expand(64, 3, 2).contiguous()
    mixed = WindowAugment(mixup=0.3)(windows)[:, 0, 0]
    own = torch.arange(64, dtype=torch.float32)
    # Each value is (1 - w) * own + w * other with w <= 0.3, so it moves at most 0.3 of the way to another window.
    assert ((mixed - own).abs() <= 0.3 * 63 + 1e-4).all() and not torch.equal(mixed, own)


def test_noise_has_the_given_spread_and_draws_repeat_under_a_seed():
    aug = WindowAugment(noise=0.5)
    torch.manual_seed(1)
    a = aug(torch.zeros(100, 26, 40, dtype=torch.float16))
    torch.manual_seed(1)
    b = aug(torch.zeros(100, 26, 40, dtype=torch.float16))
    assert a.dtype == torch.float32 and torch.equal(a, b)
    assert a.std().item() == pytest.approx(0.5, rel=0.02)


def test_an_online_teacher_scores_the_perturbed_windows(tmp_path):
    import numpy as np

    from asr_kd.data.frame_bank import FrameBank
    from asr_kd.models import FrameClassifier, FrameClassifierConfig
    from asr_kd.train.attribute_dict import AttributeDict
    from asr_kd.train.train import Teacher, make_batch

    config = FrameClassifierConfig(num_layers=1, hidden_dim=8, left_context=1, right_context=1, feat_dim=4,
                                   num_outputs=5)
    torch.manual_seed(0)
    FrameClassifier(config).save(tmp_path / "member.pt")
    rng = np.random.default_rng(0)
    bank = FrameBank.from_arrays([rng.normal(size=(9, 4)).astype(np.float32)], [rng.integers(0, 5, 9)], ["u"],
                                 tmp_path / "bank", num_classes=5)
    params = AttributeDict(model_left=1, model_right=1, input_transform=WindowAugment(noise=1.0), temperature=2.0,
                           use_bf16=False, device=torch.device("cpu"), soft_targets_dir=None,
                           teacher_checkpoints=[tmp_path / "member.pt"], teacher_mean="arithmetic")
    teacher = Teacher(params, bank)
    idx = torch.arange(9)
    batch = make_batch(params, bank, idx, teacher)
    assert not torch.allclose(batch["inputs"], bank.splice(idx, 1, 1).float())
    # The teacher's targets are those of the perturbed windows the student sees, not of the clean ones.
    torch.testing.assert_close(batch["teacher_probs"], teacher.ensemble.soft_targets(batch["inputs"], 2.0))


def test_warping_moves_a_formant_by_its_factor_and_keeps_the_axis_ends():
    from asr_kd.train.augment import warp_mel_axis

    dim = 40
    bins = torch.arange(dim, dtype=torch.float32)
    peak = torch.exp(-0.5 * ((bins - 10.0) / 1.5) ** 2)  # a formant at bin 10, a spectral tilt across the axis
    windows = (peak - 0.01 * bins).expand(3, 5, dim).contiguous()
    warped = warp_mel_axis(windows, torch.tensor([1.0, 1.25, 0.8]))
    assert torch.allclose(warped[0], windows[0], atol=1e-6)  # factor 1: unchanged
    # bin k takes the value at k * factor: the formant at 10 appears at 10 / factor
    assert [int(w[0, :30].argmax()) for w in warped] == [10, 8, 12]
    assert torch.allclose(warped[:, :, 0], windows[:, :, 0]) and torch.allclose(warped[:, :, -1], windows[:, :, -1])
    # every frame of a window is warped alike, and values stay within the window's range
    assert torch.allclose(warped[:, 1:], warped[:, :1].expand(-1, 4, -1))
    assert warped.min() >= windows.min() - 1e-6 and warped.max() <= windows.max() + 1e-6


def test_warp_draws_one_factor_per_window_within_its_range():
    torch.manual_seed(0)
    ramp = torch.arange(40, dtype=torch.float32).expand(2000, 3, 40).contiguous()
    out = WindowAugment(warp=0.1)(ramp)
    factors = out[:, 0, 10] / 10.0  # below the knee a ramp's bin 10 holds 10 * factor
    assert factors.min() >= 0.9 - 1e-5 and factors.max() <= 1.1 + 1e-5
    assert factors.std() > 0.05  # uniform on [0.9, 1.1]: sd 0.058
    with pytest.raises(InputError):
        WindowAugment(warp=0.6)
