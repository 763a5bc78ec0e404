"""`asr-kd multi-teacher-table`: MULTI_TEACHER.md of egs/synth/run_multi_teacher.sh, a row per teacher store and its student.

Reads <exp-dir>/soft/<teacher>_T<T>/manifest.json, results/acc_<student>_{dev,test}.json and the
GMM teacher's own top-1 stores soft/gmm_top1_{dev,test} (library: asr_kd.report.multi_teacher_table).

  asr-kd multi-teacher-table --exp-dir DIR --src-exp SRC --train-bank BANK \\
      --teachers ensemble gmm gmm0.2_ens --temperature 2 --out DIR/MULTI_TEACHER.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.report.multi_teacher_table import multi_teacher_table
from asr_kd.utils.io import atomic_write_text


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd multi-teacher-table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True, help="run_multi_teacher.sh's directory")
    p.add_argument("--src-exp", type=Path, required=True, help="the main run (its dev/test banks)")
    p.add_argument("--train-bank", type=Path, required=True, help="the students' train bank")
    p.add_argument("--teachers", nargs="+", required=True, help="the teacher stores' names, in table order")
    p.add_argument("--temperature", default="2", help="the stores' temperature (as in their names)")
    p.add_argument("--out", type=Path, required=True, help="markdown file to write")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        text = multi_teacher_table(args.exp_dir, args.src_exp, args.train_bank, args.teachers, args.temperature)
        atomic_write_text(args.out, text)
        print(text, end="")

    return run_cli(body, "asr-kd multi-teacher-table")


if __name__ == "__main__":
    sys.exit(main())
