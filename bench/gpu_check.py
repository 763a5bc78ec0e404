"""One prepared check of a CUDA GPU for the paper's scale: one markdown table, in at most ~8 minutes.

Rows: the bf16 GEMM ceiling; the trainer's frames/s on the paper shape (8x2560, 14,000 classes) at
batch 4096 and 16384 against its synthetic step of the same shape, with MFU; a 10-member ensemble's
soft-target throughput and MFU; a 2-minute training run of the paper shape on a learnable bank
(its loss must fall); the CUDA test group (pytest tests/cuda). The measurements are bench_train's.

Without CUDA it runs the same code paths at tiny sizes in seconds (--quick, forced on a CPU), so
the script is exercised by the CPU test suite (tests/test_gpu_check.py) and cannot rot.

  bench/gpu_check.sh                       # on the GPU machine: wheels, then this script
  python bench/gpu_check.py --device cpu   # the fallback, seconds
"""

from __future__ import annotations

import argparse
import csv
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import (gemm_flops, make_params, random_bank, real_fps, sync,  # noqa: E402
                         synthetic_fps, timed_fps, train_flops_per_frame)

from asr_kd.bin.train import main as train_main  # noqa: E402
from asr_kd.data.frame_bank import FrameBank  # noqa: E402
from asr_kd.distill.ensemble import EnsembleTeacher  # noqa: E402
from asr_kd.models import FrameClassifier, FrameClassifierConfig, shape_config  # noqa: E402
from asr_kd.utils.device import autocast, resolve_device  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    """What one mode measures: the full GPU check or the CPU fallback."""

    model_shape: str
    num_classes: int
    batch_sizes: tuple[int, ...]
    gemm_size: int
    bank_frames: int
    members: int
    train_seconds: float
    steps: int


FULL = Sizes("paper", 14000, (4096, 16384), 8192, 4_000_000, 10, 120.0, 20)
QUICK = Sizes("tiny", 200, (256, 1024), 512, 20_000, 2, 3.0, 5)


def learnable_bank(out_dir: Path, num_frames: int, config: FrameClassifierConfig, seed: int) -> FrameBank:
    """Utterances of 10-frame segments, each frame its class's mean plus unit noise: labels a network can learn.

    The class means are the same for every `seed` (train and dev banks share them); the utterances differ.
    """
    means = np.random.default_rng(0).normal(0, 0.5, size=(config.num_outputs, config.feat_dim)).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    num_utts = max(1, num_frames // 1000)
    labels = [np.repeat(rng.integers(0, config.num_outputs, 100), 10).astype(np.int32) for _ in range(num_utts)]
    feats = [means[lab] + rng.standard_normal((len(lab), config.feat_dim), dtype=np.float32) for lab in labels]
    return FrameBank.from_arrays(feats, labels, [f"u{i}" for i in range(num_utts)], out_dir, config.num_outputs)


def soft_target_fps(config: FrameClassifierConfig, device: torch.device, members: int, batch_size: int,
                    steps: int) -> float:
    """Frames/s of an ensemble's soft targets at T=2 (bf16 autocast) with the top-20 kept, as a store write does."""
    torch.manual_seed(0)
    teacher = EnsembleTeacher([FrameClassifier(config).to(device).eval() for _ in range(members)])
    x = torch.randn(batch_size, config.context, config.feat_dim, device=device).half()

    def step() -> object:
        with torch.no_grad(), autocast(device, True):
            return torch.topk(teacher.soft_targets(x, 2.0).float(), 20, dim=-1)

    return timed_fps(step, device, batch_size, steps, warmup=2)


def timed_training(exp: Path, banks: Path, model_shape: str, device: torch.device, batch_size: int, fps: float,
                   seconds: float) -> dict[str, float]:
    """The trainer itself for about `seconds` (4 epochs sized from `fps`): first and last logged loss, dev accuracy."""
    # At least 16 steps per epoch (64 in all: enough for the loss to fall), logged about 4 times each,
    # however slow the host is at the moment.
    frames_per_epoch = max(16 * batch_size, int(fps * seconds / 4))
    log_interval = max(1, frames_per_epoch // batch_size // 4)
    tic = time.perf_counter()
    rc = train_main(["--exp-dir", str(exp), "--frame-bank", str(banks), "--model-shape", model_shape,
                     "--batch-size", str(batch_size), "--frames-per-epoch", str(frames_per_epoch), "--num-epochs", "4",
                     "--lr", "0.05", "--lr-schedule", "constant", "--log-interval", str(log_interval), "--device", str(device),
                     "--amp", "bf16"])
    wall = time.perf_counter() - tic
    if rc != 0:
        return {"wall": wall, "first": math.nan, "last": math.nan, "dev_acc": math.nan}
    with open(exp / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["loss"]) for r in rows if not r["dev_acc"]]
    return {"wall": wall, "first": losses[0], "last": losses[-1], "dev_acc": float(rows[-1]["dev_acc"])}


def cuda_tests(collect_only: bool, log: Path) -> str:
    """The CUDA test group's pytest summary line ("not collected" where CUDA is absent); the quick mode only collects.

    pytest's whole output (tracebacks of any failure) goes to `log`, beside the table.
    """
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/cuda",
                           *(["--collect-only"] if collect_only else [])], cwd=REPO, capture_output=True, text=True)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode == 5:
        return "not collected: no CUDA device"
    lines = proc.stdout.strip().splitlines()
    return f"{'PASS' if proc.returncode == 0 else 'FAIL'}: {lines[-1] if lines else proc.stderr.strip()[-200:]}"


def run_check(device: torch.device, sizes: Sizes, workdir: Path, quick: bool,
              test_log: Path) -> list[tuple[str, str, str]]:
    """Every measurement of the check as (what, setting, result) rows; the CUDA tests' output goes to `test_log`."""
    config = shape_config(sizes.model_shape, num_outputs=sizes.num_classes)
    flops = train_flops_per_frame(config)
    rows = []
    ceiling = gemm_flops(device, sizes.gemm_size, torch.bfloat16, seconds=1.0)
    rows.append(("bf16 GEMM ceiling", f"{sizes.gemm_size}^3", f"{ceiling / 1e12:.2f} TFLOP/s"))
    bank = FrameBank.load(random_bank(workdir / "random", sizes.bank_frames, config.feat_dim, config.num_outputs)
                          .directory, device)
    trainer_fps = {}
    for bs in sizes.batch_sizes:
        params = make_params(workdir / "exp", device, config, bs, bf16=True)
        synth = synthetic_fps(params, config, sizes.steps, warmup=3)
        trainer_fps[bs] = real_fps(params, config, bank, sizes.steps, warmup=3)
        rows.append((f"trainer frames/s, {sizes.model_shape} {config.num_layers}x{config.hidden_dim}",
                     f"batch {bs}, bf16, {config.num_outputs} classes",
                     f"{trainer_fps[bs]:,.0f} (synthetic step {synth:,.0f}, ratio {trainer_fps[bs] / synth:.2f}); "
                     f"MFU {trainer_fps[bs] * flops / ceiling:.1%}"))
    big = max(sizes.batch_sizes)
    ens = soft_target_fps(config, device, sizes.members, big, sizes.steps)
    ens_flops = sizes.members * flops / 3  # forward only: 2 of the 6 FLOPs per weight
    rows.append(("ensemble soft targets", f"{sizes.members} members, batch {big}, T=2, top-20",
                 f"{ens:,.0f} frames/s; MFU {ens * ens_flops / ceiling:.1%}"))
    banks = workdir / "learnable"
    for part, frames, seed in (("train", sizes.bank_frames // 2, 0), ("dev", sizes.bank_frames // 20, 1)):
        learnable_bank(banks / part, frames, config, seed)
    run = timed_training(workdir / "train", banks, sizes.model_shape, device, big, trainer_fps[big], sizes.train_seconds)
    falls = "falls" if run["last"] < 0.8 * run["first"] else "DOES NOT FALL"
    rows.append((f"training {sizes.train_seconds:g} s, {sizes.model_shape}", f"asr_kd.train, batch {big}, bf16, lr 0.05",
                 f"loss {run['first']:.3f} -> {run['last']:.3f} ({falls}); dev acc {run['dev_acc']:.3f}; "
                 f"{run['wall']:.0f} s wall"))
    rows.append(("CUDA test group", "pytest tests/cuda" + (" --collect-only" if quick else ""), cuda_tests(quick, test_log)))
    return rows


def markdown(rows: list[tuple[str, str, str]], device: torch.device, mode: str) -> str:
    """The table, headed by the hardware and the command."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    head = (f"GPU check ({mode}) on {name}, torch {torch.__version__}: `python bench/gpu_check.py "
            f"{' '.join(sys.argv[1:])}`\n\n| check | setting | result |\n|---|---|---|\n")
    return head + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda (the check), or cpu (the quick fallback); auto: cuda if any")
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds (always so without CUDA)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "gpu_check.md", help="where the table is written")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    quick = args.quick or device.type != "cuda"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_check(device, QUICK if quick else FULL, Path(tmp), quick, args.out.with_name("cuda_tests.log"))
    sync(device)
    table = markdown(rows, device, "quick fallback" if quick else "full") + \
        f"\n{time.perf_counter() - tic:.0f} s in all.\n"
    print(table)
    args.out.write_text(table)
    return 0 if "DOES NOT FALL" not in table and "FAIL" not in table else 1


if __name__ == "__main__":
    sys.exit(main())
