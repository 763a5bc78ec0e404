"""Networks trained side by side on the CPU: J trainer processes of T threads each, against one of J x T.

recipes/run.sh trains the ensemble's members (and the three 3% models) `--train-jobs` at a time, each on
cores / jobs threads. This measures what that buys: every layout JOBSxTHREADS runs JOBS
processes of the trainer's own epoch loop (bench_train.py's `real`: train_one_epoch over a FrameBank of
random frames, bf16 autocast where the CPU has it) that start their timed epoch together, and counts
the frames all of them trained per second of wall time, from the first start to the last end. Layouts
run in interleaved rounds; each keeps its best round.

  python bench/bench_train_jobs.py                        # 1x<cores> against <cores>x1, the demo's 3x512
  python bench/bench_train_jobs.py --layouts 1x2 2x1 --model-shape 3x512 --steps 200 --rounds 3
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import torch

from asr_kd.data.frame_bank import FrameBank
from asr_kd.models import shape_config
from asr_kd.utils.device import bf16_is_fast
from asr_kd.utils.hardware import usable_cores
from bench_train import make_params, random_bank, real_fps


def _job(threads: int, spec: dict, rank: int, barrier, results) -> None:
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    config = shape_config(spec["model_shape"], num_outputs=spec["num_classes"])
    bank = FrameBank.load(spec["bank"], device)
    params = make_params(Path(spec["tmp"]) / f"exp{rank}", device, config, spec["batch_size"], spec["bf16"])
    torch.manual_seed(rank)
    marks: dict[str, float] = {}

    def start() -> None:
        barrier.wait()
        marks["start"] = time.perf_counter()

    fps = real_fps(params, config, bank, spec["steps"], spec["warmup"], after_warmup=start)
    results.put((rank, fps, marks["start"], time.perf_counter()))


def layout_fps(jobs: int, threads: int, spec: dict) -> tuple[float, float]:
    """(frames/s of all jobs together over the wall time, mean frames/s of one job) for JOBS x THREADS."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(jobs), ctx.Queue()
    procs = [ctx.Process(target=_job, args=(threads, spec, r, barrier, results)) for r in range(jobs)]
    for p in procs:
        p.start()
    done = [results.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a {jobs}x{threads} job exited with status {p.exitcode}")
    wall = max(end for *_, end in done) - min(start for _, _, start, _ in done)
    frames = jobs * spec["steps"] * spec["batch_size"]
    return frames / wall, sum(fps for _, fps, _, _ in done) / jobs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cores = usable_cores()
    p.add_argument("--layouts", nargs="+", default=[f"1x{cores}", f"{cores}x1"],
                   help="JOBSxTHREADS layouts; the first is the baseline of the ratios (default: 1xC and Cx1)")
    p.add_argument("--model-shape", default="3x512")
    p.add_argument("--num-classes", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16" if bf16_is_fast(torch.device("cpu")) else "fp32")
    p.add_argument("--bank-frames", type=int, default=300_000)
    p.add_argument("--steps", type=int, default=150, help="timed steps per job")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    layouts = [tuple(int(v) for v in layout.split("x")) for layout in args.layouts]
    load_before = os.getloadavg()
    best: dict[tuple[int, int], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = shape_config(args.model_shape, num_outputs=args.num_classes)
        bank = random_bank(Path(tmp) / "bank", args.bank_frames, config.feat_dim, config.num_outputs).directory
        spec = {"model_shape": args.model_shape, "num_classes": args.num_classes, "bank": str(bank), "tmp": tmp,
                "batch_size": args.batch_size, "bf16": args.dtype == "bf16", "steps": args.steps,
                "warmup": args.warmup}
        for _ in range(args.rounds):
            for layout in layouts:
                measured = layout_fps(*layout, spec)
                if measured[0] > best.get(layout, (0.0, 0.0))[0]:
                    best[layout] = measured
    load_after = os.getloadavg()
    print(f"CPU, {cores} usable cores, torch {torch.__version__}, {args.model_shape} ({args.num_classes} outputs), "
          f"batch {args.batch_size}, {args.dtype}; {args.steps} timed steps per job, best of {args.rounds} "
          f"interleaved rounds; load average {load_before[0]:.2f} at start, {load_after[0]:.2f} at end")
    base = best[layouts[0]][0]
    print(f"{'jobs x threads':>14} {'all jobs fr/s':>14} {'one job fr/s':>13} {'vs ' + args.layouts[0]:>10}")
    for layout in layouts:
        total, one = best[layout]
        print(f"{layout[0]:>7} x {layout[1]:<4} {total:>14,.0f} {one:>13,.0f} {total / base:>10.2f}")


if __name__ == "__main__":
    main()
