"""Training speed of a frame classifier against two ceilings measured in the same run.

For each preset and batch size:
  ceiling    dense matmul FLOP/s (bf16 on CUDA, fp32 on CPU), square GEMMs of --gemm-size
  synthetic  the training step on random windows already on the device (no data path at all)
  real       the trainer's own epoch loop (asr_kd.train.train.train_one_epoch) over a FrameBank
             resident on the device: random frame indices, context gathered by one index op
MFU = frames/s x 6 x (weights per frame) / ceiling; "real/synth" is the data path's cost.

  python bench/bench_train.py --preset tiny small --batch-size 1024
  python bench/bench_train.py --preset paper --batch-size 16384 --bank-frames 36000000   # on a GPU
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from asr_kd.data.frame_bank import FrameBank
from asr_kd.models import FrameClassifier, get_preset
from asr_kd.train.attribute_dict import AttributeDict
from asr_kd.train.schedule import LrSchedule
from asr_kd.train.train import (MetricsCsv, _make_optimizer, get_params, get_parser, make_batch,
                                train_one_epoch, train_step)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_ceiling(device: torch.device, n: int, seconds: float = 2.0) -> float:
    """Dense GEMM FLOP/s at the training dtype (bf16 on CUDA, fp32 on CPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    reps, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < seconds:
        for _ in range(4):
            a @ b
        reps += 4
        sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - tic)


def train_flops_per_frame(model: FrameClassifier) -> int:
    """6 x weights: forward 2 FLOPs per multiply-add, backward twice that."""
    return 6 * sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def make_params(exp_dir: Path, device: torch.device, batch_size: int, steps: int, left: int, right: int) -> AttributeDict:
    """The trainer's params with its defaults, set up as `run` would for one process."""
    params = get_params()
    params.update(vars(get_parser().parse_args(["--exp-dir", str(exp_dir), "--batch-size", str(batch_size)])))
    params.update(rank=0, world_size=1, device=device, use_bf16=device.type == "cuda", steps_per_epoch=steps,
                  model_left=left, model_right=right, log_interval=10 ** 9, checkpoint_every=10 ** 9,
                  progress_bar=False)
    return params


def synthetic_fps(params: AttributeDict, model: FrameClassifier, steps: int, warmup: int) -> float:
    """Frames/s of train_step on fixed random fp16 windows already on the device."""
    cfg, device, bs = model.config, params.device, params.batch_size
    optimizer = _make_optimizer(params, model)
    batch = {"inputs": torch.randn(bs, cfg.context, cfg.feat_dim, device=device).half(),
             "labels": torch.randint(cfg.num_outputs, (bs,), device=device)}
    for _ in range(warmup):
        train_step(params, model, optimizer, batch)
    sync(device)
    tic = time.perf_counter()
    for _ in range(steps):
        train_step(params, model, optimizer, batch)
    sync(device)
    return steps * bs / (time.perf_counter() - tic)


def real_fps(params: AttributeDict, model: FrameClassifier, bank: FrameBank, steps: int, warmup: int) -> float:
    """Frames/s of the trainer's epoch loop on random frames of a resident frame bank."""
    optimizer = _make_optimizer(params, model)
    schedule = LrSchedule(optimizer, params.lr)
    shard = torch.randint(bank.num_frames, ((steps + warmup) * params.batch_size,), device=bank.feats.device)
    for i in range(warmup):
        train_step(params, model, optimizer, make_batch(params, bank, shard[i * params.batch_size:(i + 1) * params.batch_size], None))
    sync(params.device)
    state = AttributeDict(epoch=1, step_in_epoch=warmup, global_step=0, sums=[0.0] * 4, csv_rows=0)
    params.steps_per_epoch = steps + warmup
    metrics = MetricsCsv(Path(params.exp_dir) / "metrics.csv", enabled=False)
    tic = time.perf_counter()
    train_one_epoch(params, model, optimizer, schedule, bank, shard, None, state, metrics)
    sync(params.device)
    return steps * params.batch_size / (time.perf_counter() - tic)


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
    p.add_argument("--preset", nargs="+", default=["tiny", "small"])
    p.add_argument("--batch-size", type=int, nargs="+", default=[1024])
    p.add_argument("--num-classes", type=int, help="outputs (default: the preset's)")
    p.add_argument("--bank-frames", type=int, default=300_000, help="frames in the random frame bank")
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="alternating synthetic/real rounds; the best of each counts")
    p.add_argument("--gemm-size", type=int, help="GEMM size of the ceiling (default 8192 CUDA, 1024 CPU)")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    gemm = args.gemm_size or (8192 if device.type == "cuda" else 1024)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads"
    ceiling = matmul_ceiling(device, gemm)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        banks: dict[tuple[int, int], FrameBank] = {}
        for preset in args.preset:
            config = get_preset(preset, **({"num_outputs": args.num_classes} if args.num_classes else {}))
            key = (config.feat_dim, config.num_outputs)
            if key not in banks:
                banks[key] = FrameBank.load(random_bank(Path(tmp) / f"bank{len(banks)}", args.bank_frames,
                                                        *key).directory, device)
            for bs in args.batch_size:
                params = make_params(Path(tmp) / "exp", device, bs, args.steps, config.left_context, config.right_context)
                torch.manual_seed(0)
                flops = train_flops_per_frame(FrameClassifier(config))
                # Alternate the three and keep each one's best round: robust to other load on the machine.
                synth = real = 0.0
                for _ in range(args.rounds):
                    synth = max(synth, synthetic_fps(params, FrameClassifier(config).to(device), args.steps, args.warmup))
                    real = max(real, real_fps(params, FrameClassifier(config).to(device), banks[key], args.steps,
                                              args.warmup))
                    ceiling = max(ceiling, matmul_ceiling(device, gemm, seconds=0.5))
                rows.append((preset, bs, config.num_outputs, flops, synth, real))
    dtype = "bf16" if device.type == "cuda" else "fp32"
    print(f"device {name}, torch {torch.__version__}; {dtype} GEMM {gemm}^3 ceiling {ceiling / 1e12:.3f} TFLOP/s "
          f"(best of all rounds); {args.steps} timed steps, best of {args.rounds} rounds")
    print(f"{'preset':8} {'batch':>6} {'classes':>7} {'synth fr/s':>11} {'MFU':>6} {'real fr/s':>11} {'MFU':>6} {'real/synth':>10}")
    for preset, bs, classes, flops, synth, real in rows:
        print(f"{preset:8} {bs:>6} {classes:>7} {synth:>11,.0f} {synth * flops / ceiling:>6.1%} "
              f"{real:>11,.0f} {real * flops / ceiling:>6.1%} {real / synth:>10.1%}")


if __name__ == "__main__":
    main()
