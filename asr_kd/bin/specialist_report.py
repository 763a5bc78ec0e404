"""`asr-kd specialist-report`: RESULTS.md of a specialists run (egs/synth/run_specialists.sh stage 5).

Reads <exp-dir>/sets.json, <exp-dir>/spec*/specialist.pt, <exp-dir>/results/acc_{dev,test}.json (from
`asr-kd specialist-accuracy`) and the results.json of two `asr-kd decode-nnet` runs (generalist alone,
generalist + specialists), and writes one markdown file: frame accuracy and WER with and without
specialists, then the breakdown by number of active specialists covering the correct state, with the
paper's JFT figures (Hinton et al. 2015, Tables 3 and 4) beside ours (library: asr_kd.report.specialists_table).

Example:
  asr-kd specialist-report --exp-dir exp/specialists --decode-without exp/decode/baseline \\
      --decode-with exp/specialists/decode/specialists --out exp/specialists/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.report.specialists_table import specialists_report
from asr_kd.utils.io import atomic_write_text


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd specialist-report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True, help="the specialists run's directory")
    p.add_argument("--decode-without", type=Path, required=True, help="decode-nnet output dir of the generalist alone")
    p.add_argument("--decode-with", type=Path, required=True, help="decode-nnet output dir with --specialists")
    p.add_argument("--out", type=Path, required=True, help="markdown file to write")
    add_trust_pickle_option(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        atomic_write_text(args.out, specialists_report(args.exp_dir, args.decode_without, args.decode_with))
        print(args.out)

    return run_cli(body, "asr-kd specialist-report", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
