"""`asr-kd status`: an experiment's stages done or not, their wall times, the numbers so far, and what to run next.

Reads what recipes/run.sh leaves in the experiment directory (the .stageN.done markers, log/run.log,
results/commands.tsv, nnet/*/metrics.csv, the stages' JSON results) and changes nothing, so it is
safe to run while the recipe is running.

Example:
  asr-kd status --exp-dir exp/synth-mini
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.utils.errors import InputError


def get_parser() -> argparse.ArgumentParser:
    """Command-line options of `asr-kd status`."""
    p = argparse.ArgumentParser(prog="asr-kd status", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True, help="the recipe's experiment directory")
    p.add_argument("--preset", help="the recipe preset, for the command to continue (default: the one of "
                                    "recipes/conf whose GMM settings the experiment ran with)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Print the status of --exp-dir."""
    args = get_parser().parse_args(argv)

    def body() -> None:
        from asr_kd.report.status import experiment_status, render_status

        if not args.exp_dir.is_dir():
            raise InputError(f"{args.exp_dir}: experiment directory not found")
        print(render_status(experiment_status(args.exp_dir), args.preset), end="")

    return run_cli(body, "asr-kd status")


if __name__ == "__main__":
    sys.exit(main())
