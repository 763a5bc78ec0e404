"""The LM training text: --lm-text (plain or .gz) or the corpus's lm-text.txt, whole or sampled.

Writes plain text, one sentence a line. The synthesized corpus has its own lm-text.txt; a
LibriSpeech corpus does not, and takes LibriSpeech's normalised LM text instead.

Examples:
  asr-kd prepare-lm-text --corpus-dir exp/synth/corpus --out exp/lm/lm-text.txt
  asr-kd prepare-lm-text --lm-text librispeech-lm-norm.txt.gz --num-lines 200000 --out exp/lm/lm-text.txt
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.utils.errors import InputError
from asr_kd.utils.logging import setup_logging

logger = logging.getLogger("asr_kd.bin.prepare_lm_text")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-kd prepare-lm-text", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the LM text to write (plain)")
    parser.add_argument("--lm-text", type=Path,
                        help="LM text, one sentence a line, plain or .gz (LibriSpeech: librispeech-lm-norm.txt.gz)")
    parser.add_argument("--corpus-dir", type=Path, help="without --lm-text: use <corpus-dir>/lm-text.txt")
    parser.add_argument("--num-lines", type=int, default=0,
                        help="0: every sentence; N: every k-th sentence, k = total // N, so the sample spans the "
                             "whole text (a smaller G and HCLG)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()

    def body() -> None:
        from asr_kd.lang.lm import sample_sentences

        if args.num_lines < 0:
            raise InputError(f"--num-lines must be >= 0, got {args.num_lines}")
        source = args.lm_text
        if source is None:
            if args.corpus_dir is None:
                raise InputError("give --lm-text or --corpus-dir")
            source = args.corpus_dir / "lm-text.txt"
            if not source.is_file():
                raise InputError(
                    f"{source}: no LM text in the corpus (only synthesized corpora have one): give the recipe "
                    "--lm-text (LibriSpeech: librispeech-lm-norm.txt.gz) or --arpa (LibriSpeech: "
                    "3-gram.pruned.1e-7.arpa.gz), both from openslr.org/11")
        elif not source.is_file():
            raise InputError(f"{source}: LM text not found")
        written = sample_sentences(source, args.out, args.num_lines)
        logger.info("%s: %d sentences -> %s", source, written, args.out)

    return run_cli(body, "asr-kd prepare-lm-text")


if __name__ == "__main__":
    sys.exit(main())
