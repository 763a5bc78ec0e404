"""What a number was measured on: CPU, cores, GPU and library versions, in one line."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's processor string elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_bf16_units() -> list[str]:
    """The CPU's bf16 matrix units as torch sees them: "AMX", "AVX512-BF16", both or none."""
    import torch

    units = []
    if torch.cpu._is_amx_tile_supported():
        units.append("AMX")
    if torch.cpu._is_avx512_bf16_supported():
        units.append("AVX512-BF16")
    return units


def describe_hardware() -> dict[str, str | int | None]:
    """CPU model, usable cores, the CPU's bf16 units, GPU name (None without CUDA), torch and Python versions."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": usable_cores(), "cpu_bf16": "+".join(cpu_bf16_units()) or "none", "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version()}


def hardware_line(hw: dict) -> str:
    """`hw` from `describe_hardware` as one readable line."""
    where = f"{hw.get('gpu')} + " if hw.get("gpu") else ""
    bf16 = f" (bf16 units: {hw['cpu_bf16']})" if hw.get("cpu_bf16") else ""
    return f"{where}{hw.get('cores')} cores of {hw.get('cpu')}{bf16}, torch {hw.get('torch')}, Python {hw.get('python')}"
