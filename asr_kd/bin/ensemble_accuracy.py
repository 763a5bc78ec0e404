"""Frame accuracy of each ensemble member and of the ensemble (arithmetic and geometric mean).

The paper's Table 1 compares one model's test frame accuracy with the 10-member ensemble's
(58.9% vs 61.1%); this prints both for a frame bank and optionally writes them as JSON.

Example:
  asr-kd ensemble-accuracy --teacher exp/member{1..10}/final.pt --frame-bank exp/bank/test \\
      --out exp/ensemble/test_frame_accuracy.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from asr_kd.bin.common import run_cli
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-kd ensemble-accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, nargs="+", required=True,
                        help="checkpoints of the ensemble members (FrameClassifier.save files)")
    parser.add_argument("--frame-bank", type=Path, required=True, help="frame bank directory with labels")
    parser.add_argument("--out", type=Path, default=None, help="also write the accuracies to this JSON file")
    parser.add_argument("--batch-size", type=int, default=8192, help="frames per forward")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device that runs the members (default: cuda when available)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        from asr_kd.data.frame_bank import FrameBank
        from asr_kd.distill.ensemble import EnsembleTeacher, ensemble_frame_accuracy

        setup_logging()
        if args.batch_size < 1:
            raise InputError("--batch-size must be positive")
        teacher = EnsembleTeacher.load(args.teacher, args.device)
        bank = FrameBank.load(args.frame_bank, args.device)
        acc = ensemble_frame_accuracy(teacher, bank, batch_size=args.batch_size, device=args.device)
        for i, path in enumerate(args.teacher):
            print(f"member{i + 1}\t{100 * acc[f'member{i + 1}']:.2f}%\t{path}")
        members = [acc[f"member{i + 1}"] for i in range(len(args.teacher))]
        print(f"mean of members\t{100 * sum(members) / len(members):.2f}%")
        print(f"ensemble (arithmetic)\t{100 * acc['arithmetic']:.2f}%")
        print(f"ensemble (geometric)\t{100 * acc['geometric']:.2f}%")
        if args.out is not None:
            record = dict(acc, teacher=[str(p) for p in args.teacher], frame_bank=str(args.frame_bank))
            atomic_write_json(args.out, record)

    return run_cli(body, "asr-kd ensemble-accuracy")


if __name__ == "__main__":
    sys.exit(main())
