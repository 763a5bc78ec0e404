"""`asr-kd mnist-report`: results.md of egs/mnist, the paper's MNIST numbers (Hinton et al. 2015, sec. 3) beside ours.

Reads the JSON files `asr-kd mnist-eval` wrote into --results-dir (teacher, baseline_sN,
distilled_sN, small_hard, small_T<T>, transfer_no3, transfer_78), the commands.tsv and
stage_times.tsv the recipe kept, and, with --exp-dir, each net's train.log (the device and
precision it trained in), and writes one markdown file with the tables, the seeds and epochs, the
wall time per stage and the hardware (library: asr_kd.report.mnist_table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.report.mnist_table import MnistSettings, mnist_results
from asr_kd.utils.io import atomic_write_text


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd mnist-report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results-dir", type=Path, required=True, help="mnist-eval JSON files and commands.tsv")
    p.add_argument("--data-dir", type=Path, required=True, help="the banks' directory (its summary.json)")
    p.add_argument("--out", type=Path, required=True, help="markdown file written")
    p.add_argument("--seeds", nargs="+", required=True, help="seeds of the 2x800 students")
    p.add_argument("--temperatures", nargs="+", required=True, help="temperatures of the 2x30 sweep")
    p.add_argument("--temperature", required=True, help="temperature of the 2x800 students")
    p.add_argument("--teacher-dropout", required=True, help="dropout of the teacher's hidden layers")
    for name in ("teacher", "student", "small", "transfer78"):
        p.add_argument(f"--{name}-epochs", type=int, required=True)
    p.add_argument("--exp-dir", type=Path, help="the recipe's directory: read each net's train.log for its precision")
    p.add_argument("--amp", help="the recipe's --amp (recorded)")
    p.add_argument("--num-threads", help="the recipe's --num-threads (recorded; 0: torch's default)")
    p.add_argument("--batch-size", help="the recipe's minibatch (recorded)")
    p.add_argument("--lr", help="the recipe's base learning rate (recorded)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    settings = MnistSettings(**{k: v for k, v in vars(args).items() if k != "out"})

    def body() -> None:
        text = mnist_results(settings)
        atomic_write_text(args.out, text)
        print(text)

    return run_cli(body, "asr-kd mnist-report")


if __name__ == "__main__":
    sys.exit(main())
