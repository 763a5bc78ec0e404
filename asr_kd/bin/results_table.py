"""`asr-kd results-table`: a markdown table of systems (parameters, dev/test frame accuracy and WER).

Rows read the JSON files the recipes write (library: asr_kd.report.systems_table).

Usage:
  asr-kd results-table --out exp/chains/CHAINS.md --title "Teacher-assistant chains" \\
      --row "teacher (3x 2x128)" exp/chains/results/acc_teacher - \\
      --row "student 2x32, direct" exp/chains/results/acc_2x32 exp/chains/decode/2x32
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.report.systems_table import MISSING, read_row, systems_table
from asr_kd.utils.io import atomic_write_text


def main(argv: Sequence[str] | None = None) -> int:
    """Write the table (with a title and notes) to --out and print it."""
    p = argparse.ArgumentParser(prog="asr-kd results-table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="markdown file to write")
    p.add_argument("--title", default="Results", help="the file's heading")
    p.add_argument("--note", action="append", default=[], help="a paragraph under the table (repeatable)")
    p.add_argument("--row", nargs=3, action="append", required=True, metavar=("LABEL", "ACC_PREFIX", "DECODE_DIR"),
                   help="a system: its label, the prefix of its <prefix>_{dev,test}.json accuracy files, "
                        "its decoding directory ('-': not decoded)")
    add_trust_pickle_option(p)
    args = p.parse_args(argv)

    def body() -> None:
        rows = [read_row(label, prefix, None if dec == "-" else dec) for label, prefix, dec in args.row]
        frames = next((r.num_frames for r in rows if r.num_frames), {})
        data = ", ".join(f"{part} {n} frames" for part, n in frames.items())
        text = [f"# {args.title}\n", systems_table(rows),
                f"Frame accuracies against the tri2 alignments ({data}); WER: LM weight chosen on dev, "
                f"applied to test. '{MISSING}': not run or not decoded.\n", *[n + "\n" for n in args.note]]
        atomic_write_text(args.out, "\n".join(text))
        print("\n".join(text))

    return run_cli(body, "asr-kd results-table", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
