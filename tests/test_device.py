"""--device and --amp: one meaning everywhere; the bf16 autocast path on the CPU keeps fp32 weights and losses."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch

from asr_kd.models import FrameClassifier, shape_config
from asr_kd.train.attribute_dict import AttributeDict
from asr_kd.train.train import compute_loss
from asr_kd.utils import device
from asr_kd.utils.device import autocast, bf16_is_fast, resolve_device, use_bf16
from asr_kd.utils.errors import InputError

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[1]


def test_amp_values_mean_the_same_on_every_device():
    assert use_bf16("none", CPU) is False
    assert use_bf16("bf16", CPU) is True
    assert use_bf16("auto", CPU) is bf16_is_fast(CPU)
    with pytest.raises(InputError, match="--amp"):
        use_bf16("fp8", CPU)


def test_auto_device_is_cpu_without_cuda_and_bad_names_are_input_errors(device_pinned, monkeypatch):
    monkeypatch.setattr(device, "auto_device", device_pinned)  # the real one: this test is about "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a host without CUDA, on any host
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto") == CPU
    with pytest.raises(InputError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="not a device name"):
        resolve_device("gpu0")


def test_a_test_that_lets_device_auto_choose_fails():
    with pytest.raises(pytest.fail.Exception, match="--device auto"):
        resolve_device("auto")


def test_recipes_the_suite_runs_name_the_cpu():
    """run.sh runs in subprocesses, out of `device_pinned`'s reach: the presets the tests give it must pin the CPU."""
    runners = [path for path in (REPO / "tests").rglob("*.py") if "RUN_SH" in path.read_text()]
    presets = {name for path in runners for name in re.findall(r'"--preset", "(\w+)"', path.read_text())}
    assert len(runners) >= 3 and presets, "tests/recipe_run.py, test_recipe.py and test_librispeech_recipe.py run presets"
    for preset in presets:
        conf = REPO / "recipes" / "conf" / f"{preset}.conf"
        device_name = subprocess.run(["bash", "-c", f'source "{conf}" && echo "$device"'], capture_output=True,
                                     text=True, check=True).stdout.strip()
        assert device_name == "cpu", f"{conf}: device={device_name}; the test suite needs device=cpu"


def test_bf16_step_runs_bf16_matmuls_on_fp32_weights_and_an_fp32_loss():
    torch.manual_seed(0)
    model = FrameClassifier(shape_config("tiny", num_outputs=11))
    batch = {"inputs": torch.randn(32, 26, 40).half(), "labels": torch.randint(11, (32,))}
    with autocast(CPU, True):
        assert model(batch["inputs"]).dtype == torch.bfloat16
    params = AttributeDict(use_bf16=True, device=CPU)
    loss, info = compute_loss(params, model, batch, is_training=True)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    # The bf16 loss is the fp32 loss up to bf16 rounding of the matmuls, not another quantity.
    fp32_loss, _ = compute_loss(AttributeDict(use_bf16=False, device=CPU), model, batch, is_training=False)
    assert loss.item() == pytest.approx(fp32_loss.item(), rel=2e-2)


def _cpu_has_bf16_units() -> bool:
    """From /proc/cpuinfo, independently of torch: AVX512-BF16 or AMX tiles."""
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    return bool({"avx512_bf16", "amx_tile"} & set(flags.split(":", 1)[1].split()))


@pytest.mark.parametrize("amp", ["auto", "none", "bf16"])
def test_asr_kd_hardware_says_what_the_cpu_runs_as_proc_cpuinfo_tells(amp, capsys):
    from asr_kd.bin.hardware import main

    units = _cpu_has_bf16_units()
    assert main(["--device", "cpu", "--amp", amp]) == 0
    out = capsys.readouterr().out
    assert ("(bf16 units: none)" in out) is not units
    precision = {"auto": "bf16 autocast" if units else "fp32", "none": "fp32", "bf16": "bf16 autocast"}[amp]
    assert f"--amp {amp} -> {precision}\n" in out
    # Without bf16 units: auto's fp32 is warned about, and bf16 asked for (emulated, far slower) more so.
    assert ("warning: this CPU has no bf16 matrix units" in out) is (amp == "auto" and not units)
    assert ("warning: --amp bf16 on a CPU without bf16 matrix units" in out) is (amp == "bf16" and not units)
