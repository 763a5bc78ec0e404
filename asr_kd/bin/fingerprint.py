"""`asr-kd fingerprint`: digests of an experiment's stage outputs, or where two experiments part.

Each stage output (corpus audio, transcripts, features, L, G, the mono / tri1 / tri2 GMMs, HCLG, the
train frame bank) is hashed by its files' names relative to the stage's directory and their contents,
so two copies of one experiment agree wherever they lie. With --against, both experiments' digests
side by side and the first stage output (pipeline order) whose digests differ: the stage where two
sessions or machines that should agree went different ways. RESULTS.md's provenance holds the same
table and the synthesizer and GMM library versions recorded when those stages ran.

Examples:
  asr-kd fingerprint --exp-dir exp/synth-mini
  asr-kd fingerprint --exp-dir exp/synth-mini --against /other/machine/exp/synth-mini
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli


def get_parser() -> argparse.ArgumentParser:
    """Command-line options of `asr-kd fingerprint`."""
    p = argparse.ArgumentParser(prog="asr-kd fingerprint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True, help="the experiment directory (recipes/run.sh's --exp-dir)")
    p.add_argument("--against", type=Path, help="another experiment directory to compare it with")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Print the fingerprint table, or the comparison and the first stage output that differs."""
    args = get_parser().parse_args(argv)

    def body() -> None:
        from asr_kd.report.collect import corpus_dir
        from asr_kd.report.fingerprint_table import comparison_table, fingerprint_table
        from asr_kd.utils.errors import InputError
        from asr_kd.utils.fingerprint import experiment_fingerprint, first_difference

        for exp in filter(None, (args.exp_dir, args.against)):
            if not exp.is_dir():
                raise InputError(f"{exp}: no such experiment directory")
        mine = experiment_fingerprint(args.exp_dir, corpus_dir(args.exp_dir))
        if args.against is None:
            print(fingerprint_table(mine), end="")
            return
        other = experiment_fingerprint(args.against, corpus_dir(args.against))
        print(f"first: {args.exp_dir}\nsecond: {args.against}\n")
        print(comparison_table(mine, other))
        parted = first_difference(mine, other)
        print(f"first difference: {parted}" if parted else "no stage output that both hold differs")

    return run_cli(body, "asr-kd fingerprint")


if __name__ == "__main__":
    sys.exit(main())
