"""`asr-kd distill-chain`: teacher -> assistant(s) -> student (Mirzadeh et al. 2019), link by link.

Each link is a frame classifier distilled from the link before it (library: asr_kd.train.assistants,
which documents the link directories). A rerun resumes at the first unfinished link.

Usage:
  asr-kd distill-chain --teacher exp/nnet/member{1..3}/final.pt \\
      --teacher-soft-targets exp/soft_T2 --assistant-path "2x96 2x64" --student-shape 2x32 \\
      --frame-bank exp/bank --out-dir exp/chains/links --temperature 2 \\
      -- --num-epochs 3 --lr 0.1
  (options after "--" go to every link's `asr-kd train`; add --list to print the links only)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_trust_pickle_option
from asr_kd.bin.train import parse_train_options, run_training
from asr_kd.models.shapes import parse_shape
from asr_kd.train.assistants import parse_shape_path, plan_chain, run_chain
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    """Command-line options of the chain driver."""
    p = argparse.ArgumentParser(prog="asr-kd distill-chain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", type=Path, nargs="+", required=True,
                   help="checkpoints of the first teacher (an ensemble's members)")
    p.add_argument("--teacher-soft-targets", type=Path,
                   help="existing stored soft targets of that teacher at --temperature (skips making them)")
    p.add_argument("--assistant-path", default="",
                   help="assistant shapes, teacher side first, e.g. '2x96 2x64' (empty: direct distillation)")
    p.add_argument("--student-shape", required=True, help="shape of the final student, e.g. 2x32")
    p.add_argument("--frame-bank", type=Path, required=True, help="directory with the train/ and dev/ frame banks")
    p.add_argument("--out-dir", type=Path, required=True, help="root of the link directories")
    p.add_argument("--soft-targets", choices=["stored", "online"], default="stored",
                   help="stored: top-k of each teacher written once beside it; online: teacher run every step")
    p.add_argument("--temperature", type=float, default=2.0, help="distillation temperature T of every link")
    p.add_argument("--hard-weight", type=float, default=0.5, help="hard-label CE weight of every link")
    p.add_argument("--top-k", default="auto",
                   help="probabilities stored per frame (stored mode), or 'auto' (see asr-kd make-soft-targets)")
    p.add_argument("--teacher-mean", choices=["arithmetic", "geometric"], default="arithmetic")
    p.add_argument("--device", help="device of make-soft-targets (default: its own, cuda when present)")
    p.add_argument("--list", action="store_true",
                   help="only print the links, one per line: role, lineage, final.pt path")
    p.add_argument("train_options", nargs=argparse.REMAINDER, help="after '--': options of every link's asr-kd train")
    add_trust_pickle_option(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Plan and train a teacher-assistant chain; `--list` prints the plan only."""
    args = get_parser().parse_args(argv)

    def body() -> None:
        assistants = parse_shape_path(args.assistant_path) if args.assistant_path.strip() else ()
        links = plan_chain(args.teacher, assistants, parse_shape(args.student_shape), args.out_dir)
        if args.list:
            for link in links:
                print(f"{link.role}\t{link.lineage}\t{link.final}")
            return
        train_options = list(args.train_options)
        if train_options[:1] == ["--"]:
            train_options = train_options[1:]
        setup_logging()
        run_chain(links, args.frame_bank, temperature=args.temperature, hard_weight=args.hard_weight,
                  soft_targets=args.soft_targets, first_store=args.teacher_soft_targets, top_k=args.top_k,
                  mean=args.teacher_mean, train_options=parse_train_options(train_options),
                  device=args.device or "auto")

    return run_training(body, "asr-kd distill-chain", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
