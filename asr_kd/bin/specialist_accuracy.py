"""`asr-kd specialist-accuracy`: frame accuracy of a generalist with and without its specialists.

Each frame's generalist top-n classes activate the specialists whose sets hold them; the combined
posterior minimises KL(p_g||q) + sum_m KL(p_m||q_m) (Hinton et al. 2015, Section 5.2). The frames
are broken down by how many active specialists cover the correct state (the paper's Table 4):
frames, accuracy without and with specialists, relative change. One JSON per frame bank, and a
markdown table of all banks with --table.

Example:
  asr-kd specialist-accuracy --generalist exp/nnet/baseline/final.pt \\
      --specialists exp/specialists/spec*/specialist.pt --frame-bank exp/bank/dev exp/bank/test \\
      --output exp/specialists/acc_dev.json exp/specialists/acc_test.json --table exp/specialists/table4.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.report.markdown import markdown_table
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json, atomic_write_text, read_json
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd specialist-accuracy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generalist", type=Path, required=True, help="generalist FrameClassifier checkpoint")
    p.add_argument("--specialists", type=Path, nargs="+", required=True,
                   help="specialist checkpoints from `asr-kd train-specialists` (specNN/specialist.pt)")
    p.add_argument("--frame-bank", type=Path, nargs="+", required=True, help="frame banks to score (dev, test)")
    p.add_argument("--output", type=Path, nargs="+", required=True, help="a JSON file per frame bank")
    p.add_argument("--table", type=Path, help="also write the breakdown of every bank as a markdown table")
    p.add_argument("--top-n", type=int, default=1, help="generalist classes per frame that pick the active specialists")
    p.add_argument("--combine-steps", type=int, default=20, help="EM iterations of the KL combination")
    p.add_argument("--max-covering", type=int, default=4, help="the breakdown's last row groups this many or more")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--overwrite", action="store_true", help="redo even if the outputs exist")
    add_trust_pickle_option(p)
    return p


def score_bank(combiner, bank, max_covering: int, batch_size: int):
    """The coverage breakdown of every frame of `bank`."""
    from asr_kd.distill.specialists.combine import CoverageBreakdown

    result = CoverageBreakdown.empty(max_covering)
    left, right = combiner.generalist.left_context, combiner.generalist.right_context
    for i in tqdm(range(0, bank.num_frames, batch_size), desc=str(bank.directory.name), unit="batch",
                  mininterval=2.0, leave=False):
        idx = torch.arange(i, min(i + batch_size, bank.num_frames), device=bank.device)
        out = combiner.run(bank.splice(idx, left, right))
        result.add(out, bank.batch_labels(idx), combiner.membership)
    return result


def breakdown_table(records: dict[str, dict]) -> str:
    """Table 4 layout: one block of rows per bank."""
    header = ["data", "active specialists covering the correct state", "frames", "frame acc. without",
              "frame acc. with", "relative change"]
    return markdown_table(header, [(name, row["covering"], row["frames"], f"{100 * row['acc_without']:.2f}%",
                                    f"{100 * row['acc_with']:.2f}%", f"{100 * row['relative_change']:+.2f}%")
                                   for name, rec in records.items() for row in rec["breakdown"]])


def body(args: argparse.Namespace) -> None:
    from asr_kd.data.frame_bank import FrameBank
    from asr_kd.distill.specialists.combine import SpecialistCombiner
    from asr_kd.models import FrameClassifier
    from asr_kd.utils.hardware import describe_hardware

    if len(args.output) != len(args.frame_bank):
        raise InputError(f"give one --output per --frame-bank ({len(args.frame_bank)} banks, {len(args.output)} files)")
    device = torch.device(args.device)
    combiner = None
    records = {}
    for bank_dir, out in zip(args.frame_bank, args.output):
        if out.is_file() and not args.overwrite:
            records[bank_dir.name] = read_json(out)
            continue
        if combiner is None:
            combiner = SpecialistCombiner(FrameClassifier.load(args.generalist, map_location=device),
                                          [str(p) for p in args.specialists], top_n=args.top_n,
                                          steps=args.combine_steps, device=device)
        bank = FrameBank.load(bank_dir, device)
        if (bank.feat_dim, bank.num_classes) != (combiner.generalist.config.feat_dim,
                                                 combiner.generalist.config.num_outputs):
            raise InputError(f"{bank_dir}: feat_dim/classes {bank.feat_dim}/{bank.num_classes} do not fit the generalist")
        tic = time.perf_counter()
        breakdown = score_bank(combiner, bank, args.max_covering, args.batch_size)
        rows = breakdown.rows()
        records[bank_dir.name] = rec = {
            "frame_bank": str(bank_dir), "generalist": str(args.generalist),
            "specialists": [str(p) for p in args.specialists], "top_n": args.top_n,
            "combine_steps": args.combine_steps, "accuracy_without": rows[-1]["acc_without"],
            "accuracy_with": rows[-1]["acc_with"], "num_frames": rows[-1]["frames"], "breakdown": rows,
            "seconds": round(time.perf_counter() - tic, 2), "hardware": describe_hardware(),
            "command": "asr-kd specialist-accuracy " + shlex.join(sys.argv[1:])}
        atomic_write_json(out, rec)
        print(f"{bank_dir}: frame accuracy {100 * rec['accuracy_without']:.2f}% without, "
              f"{100 * rec['accuracy_with']:.2f}% with {len(args.specialists)} specialists")
    if args.table is not None:
        atomic_write_text(args.table, breakdown_table(records))


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def run() -> None:
        setup_logging()
        body(args)

    return run_cli(run, "asr-kd specialist-accuracy", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
