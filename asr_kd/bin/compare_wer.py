"""`asr-kd compare-wer`: bootstrap confidence intervals of two systems' WERs and the probability one is better.

A and B are decode directories (`<dir>/scoring/per_utt_<part>.txt`, as decode-nnet, decode-gmm and
`asr-kd score --out-dir` write them at the LM weight chosen on dev), their scoring directories, or two
per_utt files. Every part both have is compared, utterance by utterance: the utterances are resampled
with replacement `--replicates` times (Bisani & Ney 2004; what Kaldi's compute-wer-bootci measures):
  asr-kd compare-wer exp/decode/baseline exp/decode/student
  asr-kd compare-wer exp/gmm/tri2/decode exp/decode/student --parts test test-other --out cmp.md
Prints a markdown table: each WER with its interval, B - A with its interval, and P(B better), the
share of resamples in which B makes fewer errors than A (near 0.5: the test set cannot tell them apart).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.score.wer import PER_UTT_PREFIX as PREFIX
from asr_kd.utils.errors import InputError
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-kd compare-wer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("system_a", type=Path, help="system A: decode dir, its scoring dir, or a per_utt file")
    parser.add_argument("system_b", type=Path, help="system B, on the same utterances")
    parser.add_argument("--parts", nargs="+", metavar="PART",
                        help="parts to compare, named as in per_utt_<part>.txt (default: every part both have)")
    parser.add_argument("--replicates", type=int, default=10000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument("--confidence", type=float, default=0.95, help="level of the intervals (default 0.95)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    return parser


def per_utt_files(system: Path) -> dict[str, Path]:
    """Part name -> per_utt file of a decode dir, a scoring dir or one per_utt file (named by its stem)."""
    if system.is_file():
        return {system.stem.removeprefix(PREFIX): system}
    scoring = system / "scoring" if (system / "scoring").is_dir() else system
    files = {p.stem.removeprefix(PREFIX): p for p in sorted(scoring.glob(f"{PREFIX}*.txt"))}
    if not files:
        raise InputError(f"{system}: no {PREFIX}<part>.txt files in it or in its scoring/ (decode and score first)")
    return files


def _part_order(part: str) -> tuple[int, str]:
    return ({"dev": 0, "test": 1}.get(part, 2), part)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()

    def body() -> None:
        from asr_kd.score.bootstrap import compare_wer, read_per_utt_counts
        from asr_kd.utils.io import atomic_write_text

        files_a, files_b = per_utt_files(args.system_a), per_utt_files(args.system_b)
        if args.system_a.is_file() and args.system_b.is_file():
            files_b = {next(iter(files_a)): args.system_b}  # two files: compared whatever their names
        common = sorted(set(files_a) & set(files_b), key=_part_order)
        parts = args.parts or common
        missing = [p for p in parts if p not in common]
        if missing or not parts:
            raise InputError(f"parts {', '.join(missing) or '(none in common)'} are not scored in both "
                             f"{args.system_a} ({', '.join(files_a)}) and {args.system_b} ({', '.join(files_b)})")
        level = f"{100 * args.confidence:g}%"
        lines = [f"A = {args.system_a}, B = {args.system_b}; {args.replicates} bootstrap resamples of the utterances "
                 f"(seed {args.seed}), {level} intervals", "",
                 f"| set | utterances / words | A WER % [{level}] | B WER % [{level}] | B - A [{level}] "
                 "| P(B better) |",
                 "|---|---|---|---|---|---:|"]
        for part in parts:
            cmp = compare_wer(read_per_utt_counts(files_a[part]), read_per_utt_counts(files_b[part]),
                              args.replicates, args.seed, args.confidence, (str(files_a[part]), str(files_b[part])))
            lines.append(
                f"| {part} | {cmp.num_utterances} / {cmp.num_ref_words} "
                f"| {cmp.wer_a:.2f} [{cmp.interval_a[0]:.2f}, {cmp.interval_a[1]:.2f}] "
                f"| {cmp.wer_b:.2f} [{cmp.interval_b[0]:.2f}, {cmp.interval_b[1]:.2f}] "
                f"| {cmp.wer_b - cmp.wer_a:+.2f} [{cmp.interval_diff[0]:+.2f}, {cmp.interval_diff[1]:+.2f}] "
                f"| {cmp.prob_b_better:.3f} |")
        text = "\n".join(lines) + "\n"
        if args.out is not None:
            atomic_write_text(args.out, text)
        print(text, end="")

    return run_cli(body, "asr-kd compare-wer")


if __name__ == "__main__":
    sys.exit(main())
