"""Where networks run and in which precision: --device and --amp values, one meaning everywhere."""

from __future__ import annotations

import contextlib
import os
from typing import Literal

import torch

from asr_kd.utils.errors import InputError
from asr_kd.utils.hardware import cpu_bf16_units

AmpMode = Literal["auto", "bf16", "none"]
AMP_CHOICES = ("auto", "bf16", "none")


def auto_device() -> str:
    """What --device auto means here: "cuda" when a CUDA device is available, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str, rank: int = 0) -> torch.device:
    """A --device value as a device: "auto" is `auto_device()`.

    A bare "cuda" becomes this rank's GPU (LOCAL_RANK under torchrun, else `rank`) and is made current.
    """
    if name == "auto":
        name = auto_device()
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InputError(f"--device {name!r}: not a device name (auto, cpu, cuda, cuda:N)") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA device is available here")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def bf16_is_fast(device: torch.device) -> bool:
    """True where bf16 matmuls run on hardware units: CUDA GPUs with bf16, CPUs with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_bf16_units())
    return False


def use_bf16(amp: str, device: torch.device) -> bool:
    """Whether an --amp value means bf16 autocast on `device` ("auto": where `bf16_is_fast`)."""
    if amp not in AMP_CHOICES:
        raise InputError(f"--amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    if amp == "auto":
        return bf16_is_fast(device)
    return amp == "bf16"


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when `enabled`, else a no-op context."""
    if enabled:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def slow_precision_note(amp: str, device: torch.device) -> str | None:
    """A warning when networks on a CPU without bf16 units will be slow: fp32 from --amp auto, or bf16 emulated."""
    if device.type != "cpu" or amp == "none" or bf16_is_fast(device):
        return None
    if amp == "auto":
        return ("this CPU has no bf16 matrix units (AVX512-BF16 or AMX), so --amp auto trains and runs the networks "
                "in fp32: the mini preset's training steps took 6-8x as long as on a CPU with them (README, 'CPUs "
                "without bf16 units')")
    return ("--amp bf16 on a CPU without bf16 matrix units (AVX512-BF16 or AMX): bf16 is emulated, and a 3 x 512 "
            "training step ran at 1/39 of its fp32 speed on such a CPU (README, 'CPUs without bf16 units'); "
            "--amp auto picks fp32 here")
