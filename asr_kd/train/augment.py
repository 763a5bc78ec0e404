"""Perturbations of training windows (B, frames, mel bins): mel-axis warping, SpecAugment-style masks, noise, mixup.

Applied by the trainer to training minibatches only (never to dev). With an online teacher the
teacher scores the perturbed windows too, so its soft targets describe exactly what the student
sees (consistent teaching); with hard labels or a stored teacher the label is the clean window's,
so only label-preserving perturbations (masks, small noise, mixup weights below 0.5) make sense.
Draws come from torch's global generator, whose state the trainer's checkpoints carry: a resumed
run perturbs exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from asr_kd.utils.errors import InputError


@dataclass(frozen=True)
class WindowAugment:
    """What to perturb; every field 0 means off.

    freq_mask: up to this many consecutive mel bins set to 0 (the normalised mean), one band per window
    time_mask: up to this many consecutive frames of the window set to 0, one span per window
    noise: standard deviation of Gaussian noise added to the normalised features
    mixup: weight, drawn uniformly in [0, mixup], of another window of the batch mixed into each one
    warp: each window's mel axis stretched by a factor drawn uniformly in [1 - warp, 1 + warp], up to
        80% of the axis, the rest squeezed to keep the top bin in place: vocal-tract length
        perturbation (Jaitly & Hinton 2013) on the filterbank, a voice that is longer or shorter
    """

    freq_mask: int = 0
    time_mask: int = 0
    noise: float = 0.0
    mixup: float = 0.0
    warp: float = 0.0

    def __post_init__(self) -> None:
        if (min(self.freq_mask, self.time_mask) < 0 or self.noise < 0 or not 0 <= self.mixup < 1
                or not 0 <= self.warp < 0.5):
            raise InputError(f"augmentation settings out of range: {self}")

    @property
    def active(self) -> bool:
        """True when any perturbation is on."""
        return any(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        """The settings as `--augment` takes them ('none' when off)."""
        on = [f"{f.name}={getattr(self, f.name):g}" for f in fields(self) if getattr(self, f.name)]
        return ",".join(on) or "none"

    def __call__(self, windows: Tensor, labels: Tensor | None = None) -> Tensor:
        """Perturbed copies of `windows` (B, W, D) as float32; `labels` are not changed (trainer hook signature)."""
        x = windows.float()
        batch, width, dim = x.shape
        if self.warp > 0:
            x = warp_mel_axis(x, 1 + self.warp * (2 * torch.rand(batch, device=x.device) - 1))
        if self.mixup > 0:
            weight = torch.rand(batch, 1, 1, device=x.device) * self.mixup
            x = (1 - weight) * x + weight * x[torch.randperm(batch, device=x.device)]
        if self.freq_mask > 0:
            x = x * ~_band_mask(batch, dim, self.freq_mask, x.device)[:, None, :]
        if self.time_mask > 0:
            x = x * ~_band_mask(batch, width, self.time_mask, x.device)[:, :, None]
        if self.noise > 0:
            x = x + self.noise * torch.randn_like(x)
        return x


def warp_mel_axis(windows: Tensor, factors: Tensor, boundary: float = 0.8) -> Tensor:
    """Windows (B, W, D) whose bin k takes the value at position k * factor, interpolated linearly.

    Up to `boundary` of the axis the stretch is `factors` (B,); above it the positions run
    linearly to the top bin, so the axis keeps its ends and its order.
    """
    dim = windows.shape[-1]
    top = dim - 1.0
    k = torch.arange(dim, device=windows.device, dtype=windows.dtype)[None, :]
    knee = boundary * top
    f = factors.to(windows.dtype)[:, None]
    src = torch.where(k <= knee, k * f, knee * f + (k - knee) * (top - knee * f) / (top - knee))
    src = src.clamp(0, top)
    lo = src.floor().long().clamp(max=dim - 2)
    frac = (src - lo)[:, None, :]
    lo = lo[:, None, :].expand(-1, windows.shape[1], -1)
    return windows.gather(-1, lo) * (1 - frac) + windows.gather(-1, lo + 1) * frac


def _band_mask(batch: int, size: int, max_width: int, device: torch.device) -> Tensor:
    """(batch, size) booleans: per row one band of 0..max_width consecutive True positions."""
    width = torch.randint(0, min(max_width, size) + 1, (batch, 1), device=device)
    start = (torch.rand(batch, 1, device=device) * (size - width + 1)).long()
    pos = torch.arange(size, device=device)[None, :]
    return (pos >= start) & (pos < start + width)


def parse_augment(spec: str | None) -> WindowAugment:
    """'freq_mask=8,time_mask=5,noise=0.1,mixup=0.4,warp=0.1' (any subset; '' or 'none': off) as a WindowAugment."""
    if not spec or spec == "none":
        return WindowAugment()
    names = {f.name: f.type for f in fields(WindowAugment)}
    values: dict[str, float | int] = {}
    for item in spec.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or name not in names:
            raise InputError(f"--augment {spec!r}: expected NAME=VALUE items with NAME in {', '.join(names)}")
        try:
            values[name] = int(value) if name in ("freq_mask", "time_mask") else float(value)
        except ValueError as err:
            raise InputError(f"--augment {spec!r}: {name} needs a number, got {value!r}") from err
    return WindowAugment(**values)
