"""`asr-kd augment-table`: AUGMENT.md of egs/synth/run_augment.sh, WER in and out of domain with and without augmentation.

Each --row names a label, the model's training dir (params.json: frames per epoch, updates; "" for an
ensemble: its members' params.json beside the decode's model files), its decoding dir (results.json:
dev and test frame accuracy, dev, test and test-other WER at dev's LM weight) and the training set's
summary (<set>.json of `asr-kd augment-data`: the copies; "" for the source's own train set).
Each --gain names a label and the decoding dirs of a baseline, an ensemble and a student trained on
the same data: the share of the ensemble's gain over the baseline that the student recovers
(library: asr_kd.report.augment_table).

  asr-kd augment-table --src-exp SRC --out DIR/AUGMENT.md \\
      --row "baseline" SRC/nnet/baseline SRC/decode/baseline "" \\
      --row "baseline, augmented: sp0.9,sp1.1" DIR/nnet/baseline_sp DIR/decode/baseline_sp DIR/data/sp.json \\
      --row "ensemble, augmented: sp0.9,sp1.1" "" DIR/decode/ensemble_sp DIR/data/sp.json \\
      --gain "augmented: sp0.9,sp1.1" DIR/decode/baseline_sp DIR/decode/ensemble_sp DIR/decode/student_sp
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.report.augment_table import AugmentRow, GainRow, augment_table
from asr_kd.utils.io import atomic_write_text


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd augment-table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src-exp", type=Path, required=True, help="the recipe run the augmented sets came from")
    p.add_argument("--row", nargs=4, action="append", required=True,
                   metavar=("LABEL", "TRAIN_DIR", "DECODE_DIR", "SET_SUMMARY"), help="a system (repeatable)")
    p.add_argument("--gain", nargs=4, action="append", default=[],
                   metavar=("LABEL", "BASELINE_DECODE_DIR", "ENSEMBLE_DECODE_DIR", "STUDENT_DECODE_DIR"),
                   help="a training set's baseline, ensemble and student (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="markdown file to write")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        rows = [AugmentRow(label, train, Path(decode), summary) for label, train, decode, summary in args.row]
        gains = [GainRow(label, Path(b), Path(e), Path(s)) for label, b, e, s in args.gain]
        text = augment_table(args.src_exp, rows, gains, commands=f"{args.out.parent}/results/commands.tsv")
        atomic_write_text(args.out, text)
        print(text, end="")

    return run_cli(body, "asr-kd augment-table")


if __name__ == "__main__":
    sys.exit(main())
