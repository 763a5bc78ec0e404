"""`asr-kd deploy-table`: DEPLOY.md of egs/synth/run_deploy.sh, size, parity, accuracy and CPU decode cost per system.

Reads <exp-dir>/export/<model>/model.{onnx,ts.pt}, results/parity_<model>.json,
results/acc_<system>_test.json and decode/<system>_{onnx,torch}/results.json (library:
asr_kd.report.deploy_table).

  asr-kd deploy-table --exp-dir DIR --systems baseline student ensemble \\
      --members member1 member2 member3 --out DIR/DEPLOY.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.report.deploy_table import deploy_table
from asr_kd.utils.io import atomic_write_text


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd deploy-table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True, help="run_deploy.sh's directory")
    p.add_argument("--systems", nargs="+", required=True, help="systems in table order ('ensemble' = the members)")
    p.add_argument("--members", nargs="+", required=True, help="the ensemble's model names under export/")
    p.add_argument("--src-exp", type=Path, help="the main run, for its test WERs (LM weight chosen on dev)")
    p.add_argument("--out", type=Path, required=True, help="markdown file to write")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        text = deploy_table(args.exp_dir, args.systems, args.members, args.src_exp)
        atomic_write_text(args.out, text)
        print(text, end="")

    return run_cli(body, "asr-kd deploy-table")


if __name__ == "__main__":
    sys.exit(main())
