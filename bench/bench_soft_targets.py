"""Soft-target generation speed of an N-member ensemble: member loop vs the stacked (batched) paths.

Both paths do what `SoftTargetStore.write` does per batch (members' forward, mean at T, top-k on
the device). The ceiling is the same run's speed (best of --repeats, interleaved) for the members' matmuls alone, as one bmm per
layer over stacked weights (no activation, softmax or top-k): what a batched path could reach.
Also prints the store size per hour of audio for a few k.

  python bench/bench_soft_targets.py --model-shape tiny --members 10 --device cpu --write-frames 20000
  python bench/bench_soft_targets.py --model-shape paper --members 10 --device cuda --batch-size 16384
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from asr_kd.distill.ensemble import EnsembleTeacher, average_posteriors
from asr_kd.data.frame_bank import FrameBank
from asr_kd.distill.soft_targets import FRAMES_PER_HOUR, SoftTargetStore, store_bytes_per_frame
from asr_kd.models import FrameClassifier, FrameClassifierConfig, shape_config


def _timed(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int) -> dict[str, float]:
    """Fastest seconds per call of each function, calls interleaved so load on a shared machine hits all alike."""
    for fn in fns.values():
        fn()  # warm-up: stacking, allocator, kernels
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _time_write(teacher: EnsembleTeacher, config: FrameClassifierConfig, args: argparse.Namespace,
                device: torch.device) -> float:
    """Seconds for `SoftTargetStore.write` over a frame bank of `--write-frames` random frames."""
    rng = np.random.default_rng(0)
    sizes = [args.write_frames // 10] * 9 + [args.write_frames - 9 * (args.write_frames // 10)]
    feats = [rng.normal(size=(n, config.feat_dim)).astype(np.float32) for n in sizes]
    labels = [rng.integers(0, config.num_outputs, size=n) for n in sizes]
    with tempfile.TemporaryDirectory() as tmp:
        FrameBank.from_arrays(feats, labels, [f"utt{i}" for i in range(10)], Path(tmp) / "bank",
                              num_classes=config.num_outputs)
        bank = FrameBank.load(Path(tmp) / "bank", device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        SoftTargetStore.write(teacher, bank, Path(tmp) / "st", args.temperature, args.top_k, args.batch_size, device)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-shape", default="tiny", help="model shape of every member (named, or LAYERSxWIDTH)")
    parser.add_argument("--num-outputs", type=int, default=None, help="override the shape's number of classes")
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--write-frames", type=int, default=0,
                        help="also time SoftTargetStore.write end to end on a frame bank of this many random frames")
    args = parser.parse_args()

    device = torch.device(args.device)
    config = shape_config(args.model_shape, num_outputs=args.num_outputs)
    torch.manual_seed(0)
    members = [FrameClassifier(config).to(device).eval() for _ in range(args.members)]
    amp = device.type == "cuda"
    # The frame bank hands out fp16 windows; on the CPU the members run in fp32.
    x = torch.randn(args.batch_size, config.context, config.feat_dim, device=device,
                    dtype=torch.float16 if amp else torch.float32)

    def generate(teacher: EnsembleTeacher) -> Callable[[], object]:
        def step() -> object:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = teacher.member_logits(x)
            p = average_posteriors(logits, args.temperature, teacher.mean, overwrite_input=True)
            return torch.topk(p, args.top_k, dim=-1)

        return step

    teachers = {path: EnsembleTeacher(members, path=path) for path in ("loop", "vmap", "mlp")}

    # Ceiling: the same matmuls, stacked, chained, nothing else.
    dims = [config.input_dim] + [config.hidden_dim] * config.num_layers + [config.num_outputs]
    dtype = torch.bfloat16 if amp else torch.float32
    weights = [torch.randn(args.members, a, b, device=device, dtype=dtype) / a**0.5 for a, b in zip(dims, dims[1:])]
    h0 = x.reshape(1, args.batch_size, -1).to(dtype).expand(args.members, -1, -1)

    def matmuls() -> object:
        h = h0
        for w in weights:
            h = torch.bmm(h, w)
        return h

    fns = {path: generate(teacher) for path, teacher in teachers.items()}
    fns["ceiling"] = matmuls
    with torch.no_grad():
        best = _timed(fns, device, args.repeats)
    flops_per_frame = 2 * args.members * sum(a * b for a, b in zip(dims, dims[1:]))
    n = args.batch_size
    print(f"device={device} shape={args.model_shape} ({config.num_layers}x{config.hidden_dim}, "
          f"{config.num_outputs} outputs) members={args.members} batch={n} top-k={args.top_k} "
          f"threads={torch.get_num_threads()}")
    labels = {"loop": "member loop", "vmap": "vmap over stacked weights",
              "mlp": "stacked GEMM/baddbmm (mlp path)", "ceiling": "matmul ceiling (stacked bmm only)"}
    for name, t in best.items():
        print(f"  {labels[name]:36s} {n / t:12,.0f} frames/s  {flops_per_frame * n / t / 1e9:8.1f} GFLOP/s"
              f"  {best['ceiling'] / t:5.0%} of ceiling  {best['loop'] / t:5.2f}x loop")

    if args.write_frames > 0:
        auto = EnsembleTeacher(members)
        t_write = _time_write(auto, config, args, device)
        t_auto = best[auto.path]
        print(f"  SoftTargetStore.write, {auto.path} path, {args.write_frames} frames: "
              f"{args.write_frames / t_write:,.0f} frames/s = {args.write_frames * t_auto / (t_write * args.batch_size):.0%}"
              f" of its compute-only speed above (the rest: splicing, host copies, memmap writes, checksum)")

    print("store size per hour of audio (360,000 frames):")
    for k in (10, 20, 50):
        for classes in sorted({config.num_outputs, 14000, 40000}):
            mb = store_bytes_per_frame(k, classes) * FRAMES_PER_HOUR / 1e6
            print(f"  k={k:3d} classes={classes:6d}: {mb:7.1f} MB/h")
    print(f"  dense fp16, 14000 classes: {2 * 14000 * FRAMES_PER_HOUR / 1e9:.1f} GB/h")


if __name__ == "__main__":
    main()
