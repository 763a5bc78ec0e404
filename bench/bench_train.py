"""Training speed of a frame classifier against a GEMM ceiling and a plain-PyTorch probe, in one run.

For each model shape and batch size, in bf16 autocast and in fp32:
  ceiling    dense square GEMM FLOP/s of that dtype on the device (--gemm-size)
  raw        a plain PyTorch step of the same shape that uses nothing of the toolkit: nn.Sequential of
             Linear+ReLU, flattened fp32 inputs already on the device, SGD momentum 0.9, fp32 cross-entropy
  synthetic  the trainer's own train_step on fixed random fp16 windows (no data path)
  real       the trainer's own epoch loop (train_one_epoch) over a FrameBank of random frames on the device:
             random frame indices, context gathered by one index op, labels, counters
All of them run in interleaved rounds and each keeps its best round, so load from other jobs on the
machine hits them alike. MFU = frames/s x 6 x (weights per frame) / ceiling of the same dtype;
real/raw is what the toolkit costs over a bare step (target for bf16: >= 0.9), real/synth the data
path's share; bf16/fp32 the speed-up of autocast.

  python bench/bench_train.py                                  # tiny (2x128) and 3x512, 1500 classes
  python bench/bench_train.py --model-shapes 3x512 --num-classes 1500 --batch-size 1024
  python bench/bench_train.py --model-shapes paper --num-classes 14000 --batch-size 4096 16384 --bank-frames 36000000  # GPU
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asr_kd.data.frame_bank import FrameBank
from asr_kd.models import FrameClassifier, FrameClassifierConfig, shape_config
from asr_kd.train.attribute_dict import AttributeDict
from asr_kd.train.schedule import LrSchedule
from asr_kd.train.train import MetricsCsv, TrainConfig, _make_optimizer, train_one_epoch, train_step
from asr_kd.train.train import make_params as trainer_params
from asr_kd.utils.device import autocast, resolve_device

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
KINDS = ("raw", "synth", "real")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); CPU ops are synchronous."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_flops(device: torch.device, n: int, dtype: torch.dtype, seconds: float) -> float:
    """Dense (n x n) @ (n x n) FLOP/s in `dtype`, measured for about `seconds`."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    sync(device)
    reps, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < seconds:
        a @ b
        reps += 1
        sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - tic)


def add_timing_options(p: argparse.ArgumentParser, steps: int) -> None:
    """The options every benchmark here shares: timed steps, warm-up, rounds, GEMM ceiling size, device."""
    p.add_argument("--steps", type=int, default=steps, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each measurement counts")
    p.add_argument("--gemm-size", type=int, help="GEMM size of the ceiling (default 8192 on CUDA, 2048 on CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def timing_setup(args: argparse.Namespace) -> tuple[torch.device, int]:
    """The device of --device and the GEMM size of its ceiling."""
    device = resolve_device(args.device)
    return device, args.gemm_size or (8192 if device.type == "cuda" else 2048)


def shape_label(spec: str, config: FrameClassifierConfig) -> str:
    """A table label such as 'tiny 2x128' (a named shape) or '3x512'."""
    size = f"{config.num_layers}x{config.hidden_dim}"
    return size if spec == size else f"{spec} {size}"


def train_flops_per_frame(config: FrameClassifierConfig) -> int:
    """6 x weights: forward 2 FLOPs per multiply-add, backward twice that."""
    dims = [config.input_dim] + [config.hidden_dim] * config.num_layers + [config.num_outputs]
    return 6 * sum(a * b for a, b in zip(dims, dims[1:]))


def timed_fps(step: Callable[[], object], device: torch.device, batch_size: int, steps: int, warmup: int) -> float:
    """Frames/s of `steps` calls of `step` after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    sync(device)
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * batch_size / (time.perf_counter() - tic)


def raw_fps(config: FrameClassifierConfig, device: torch.device, bf16: bool, batch_size: int, lr: float,
            steps: int, warmup: int) -> float:
    """Frames/s of a bare PyTorch training step of the model's shape (no toolkit code at all)."""
    dims = [config.input_dim] + [config.hidden_dim] * config.num_layers
    layers: list[nn.Module] = []
    for a, b in zip(dims, dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(dims[-1], config.num_outputs)).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    x = torch.randn(batch_size, config.input_dim, device=device)
    y = torch.randint(config.num_outputs, (batch_size,), device=device)

    def step() -> None:
        with autocast(device, bf16):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed_fps(step, device, batch_size, steps, warmup)


def make_params(exp_dir: Path, device: torch.device, config: FrameClassifierConfig, batch_size: int,
                bf16: bool) -> AttributeDict:
    """The trainer's params with its defaults, set up as its `run` would for one process."""
    params = trainer_params(TrainConfig(exp_dir=exp_dir, batch_size=batch_size, amp="bf16" if bf16 else "none",
                                        log_interval=10 ** 9, checkpoint_every=10 ** 9, progress_bar=False))
    params.update(rank=0, world_size=1, device=device, comm_device=device, use_bf16=bf16,
                  model_left=config.left_context, model_right=config.right_context)
    return params


def synthetic_fps(params: AttributeDict, config: FrameClassifierConfig, steps: int, warmup: int) -> float:
    """Frames/s of the trainer's train_step on fixed random fp16 windows already on the device."""
    device, bs = params.device, params.batch_size
    model = FrameClassifier(config).to(device)
    optimizer = _make_optimizer(params, model)
    batch = {"inputs": torch.randn(bs, config.context, config.feat_dim, device=device).half(),
             "labels": torch.randint(config.num_outputs, (bs,), device=device)}
    return timed_fps(lambda: train_step(params, model, optimizer, batch), device, bs, steps, warmup)


def real_fps(params: AttributeDict, config: FrameClassifierConfig, bank: FrameBank, steps: int, warmup: int,
             after_warmup: Callable[[], object] | None = None) -> float:
    """Frames/s of the trainer's epoch loop over random frames of a resident frame bank (`after_warmup` is
    called between the warm-up epoch and the timed one)."""
    model = FrameClassifier(config).to(params.device)
    optimizer = _make_optimizer(params, model)
    schedule = LrSchedule(optimizer, params.lr)
    metrics = MetricsCsv(Path(params.exp_dir) / "metrics.csv", enabled=False)
    bs = params.batch_size

    def epoch(num_steps: int) -> float:
        shard = torch.randint(bank.num_frames, (num_steps * bs,), device=bank.feats.device)
        params.steps_per_epoch = num_steps
        state = AttributeDict(epoch=1, step_in_epoch=0, global_step=0, sums=[0.0] * 6, csv_rows=0)
        sync(params.device)
        tic = time.perf_counter()
        train_one_epoch(params, model, optimizer, schedule, bank, shard, None, state, metrics)
        sync(params.device)
        return num_steps * bs / (time.perf_counter() - tic)

    epoch(warmup)
    if after_warmup is not None:
        after_warmup()
    return epoch(steps)


def random_bank(out_dir: Path, num_frames: int, feat_dim: int, num_classes: int, seed: int = 0) -> FrameBank:
    """A bank of random utterances of 2-15 s (LibriSpeech-like lengths)."""
    rng = np.random.default_rng(seed)
    lengths: list[int] = []
    total = 0
    while total < num_frames:
        lengths.append(int(min(rng.integers(200, 1500), num_frames - total)))
        total += lengths[-1]
    # Utterances are views into one pool of random frames, so a 100-hour bank needs no 100 hours in RAM.
    pool = rng.standard_normal((min(num_frames, 1 << 20) + 1500, feat_dim), dtype=np.float32)
    starts = rng.integers(0, len(pool) - 1500, len(lengths))
    feats = [pool[s:s + n] for s, n in zip(starts, lengths)]
    labels = [rng.integers(0, num_classes, n, dtype=np.int32) for n in lengths]
    return FrameBank.from_arrays(feats, labels, [f"u{i}" for i in range(len(lengths))], out_dir, num_classes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-shapes", nargs="+", default=["tiny", "3x512"],
                   help="model shapes: named (tiny, small, ...) or LAYERSxWIDTH (default: 2x128 and the demo's 3x512)")
    p.add_argument("--num-classes", type=int, default=1500, help="outputs (the mini demo's pdf count)")
    p.add_argument("--batch-size", type=int, nargs="+", default=[1024])
    p.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=["bf16", "fp32"])
    p.add_argument("--bank-frames", type=int, default=300_000, help="frames in the random frame bank")
    add_timing_options(p, steps=20)
    args = p.parse_args()
    device, gemm = timing_setup(args)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads"
    shapes = {shape_label(s, c): c for s in args.model_shapes for c in [shape_config(s, num_outputs=args.num_classes)]}
    load_before = os.getloadavg()
    ceiling = dict.fromkeys(args.dtype, 0.0)
    best: dict[tuple[str, int, str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        banks: dict[tuple[int, int], FrameBank] = {}
        for config in shapes.values():
            key = (config.feat_dim, config.num_outputs)
            if key not in banks:
                directory = random_bank(Path(tmp) / f"bank{len(banks)}", args.bank_frames, *key).directory
                banks[key] = FrameBank.load(directory, device)
        for _ in range(args.rounds):
            for dtype in args.dtype:
                ceiling[dtype] = max(ceiling[dtype], gemm_flops(device, gemm, DTYPES[dtype], seconds=0.5))
            for label, config in shapes.items():
                for bs in args.batch_size:
                    for dtype in args.dtype:
                        bf16 = dtype == "bf16"
                        params = make_params(Path(tmp) / "exp", device, config, bs, bf16)
                        torch.manual_seed(0)
                        measured = {
                            "raw": raw_fps(config, device, bf16, bs, params.lr, args.steps, args.warmup),
                            "synth": synthetic_fps(params, config, args.steps, args.warmup),
                            "real": real_fps(params, config, banks[(config.feat_dim, config.num_outputs)],
                                             args.steps, args.warmup),
                        }
                        for kind, fps in measured.items():
                            best[label, bs, dtype, kind] = max(best.get((label, bs, dtype, kind), 0.0), fps)
    load_after = os.getloadavg()

    print(f"device {name}, torch {torch.__version__}; load average {load_before[0]:.2f} at start, "
          f"{load_after[0]:.2f} at end")
    print("GEMM " + ", ".join(f"{d} {ceiling[d] / 1e12:.3f} TFLOP/s" for d in args.dtype)
          + f" ({gemm}^3, best of rounds); {args.steps} timed steps, best of {args.rounds} interleaved rounds")
    speedup = "bf16/fp32 raw real" if {"bf16", "fp32"} <= set(args.dtype) else ""
    print(f"{'shape':13} {'batch':>6} {'classes':>7} {'dtype':5} {'raw fr/s':>10} {'MFU':>6} {'synth fr/s':>10} "
          f"{'MFU':>6} {'real fr/s':>10} {'MFU':>6} {'real/raw':>8} {'real/synth':>10}  {speedup}".rstrip())
    for label, config in shapes.items():
        flops = train_flops_per_frame(config)
        for bs in args.batch_size:
            for dtype in args.dtype:
                fps = {kind: best[label, bs, dtype, kind] for kind in KINDS}
                line = (f"{label:13} {bs:>6} {config.num_outputs:>7} {dtype:5} "
                        + " ".join(f"{fps[k]:>10,.0f} {fps[k] * flops / ceiling[dtype]:>6.1%}" for k in KINDS)
                        + f" {fps['real'] / fps['raw']:>8.3f} {fps['real'] / fps['synth']:>10.3f}")
                if speedup and dtype == "bf16":
                    line += "  " + " ".join(f"{fps[k] / best[label, bs, 'fp32', k]:.2f}x" for k in ("raw", "real"))
                print(line)


if __name__ == "__main__":
    main()
