"""Synthesize the embedded LibriSpeech-layout corpus from Debian TTS engines and text packages."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.data.synth import CORPUS_SIZES, summary_markdown, synthesize_corpus
from asr_kd.utils.logging import setup_logging

PROG = "asr-kd synth-corpus"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Speak sentences from Debian text packages (fortunes, KJV and WEB bibles, WordNet) with "
            "espeak-ng, flite and festival voices into <out-dir>/LibriSpeech/{train-clean-100,dev-clean,"
            "test-clean,test-other}/SPK/CHAP/ (test-other: the never-heard test set, test-clean's sentences read by "
            "espeak-ng's Klatt voices, a family no other split uses), plus SPEAKERS.TXT, lm-text.txt (no dev/test "
            "sentence), per-chapter "
            "phone CTMs (flite and festival) and summary.json / summary.md. Rerunning resumes: finished "
            "chapters (those with a trans.txt) are skipped."),
        epilog="example: python -m asr_kd.bin.synth_corpus --out-dir /tmp/corpus --size mini --num-workers 2",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out-dir", required=True, help="corpus directory (created; reused to resume)")
    parser.add_argument("--size", default="tiny", choices=sorted(CORPUS_SIZES),
                        help="corpus size: tiny ~10 min in all, mini ~2.5 h train + 15 min dev + 15 min test, "
                             "small 10 h, train-clean-100 100 h (LibriSpeech's sizes)")
    parser.add_argument("--hours", type=float, default=None,
                        help="train hours instead of a named --size (dev and test get a tenth each, at most 5.4 h)")
    parser.add_argument("--transfer-hours", type=float, default=None,
                        help="hours of unlabelled train-clean-360 audio (other speakers, other sentences) for a "
                             "student's transfer set; default: the size's own (3 minutes for tiny, none otherwise)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the plan (speakers, sentences, ids)")
    parser.add_argument("--num-workers", type=int, default=2, help="parallel synthesis processes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()

    def body() -> None:
        start = time.time()
        summary = synthesize_corpus(args.out_dir, size=args.size, hours=args.hours, seed=args.seed,
                                    num_workers=args.num_workers, transfer_hours=args.transfer_hours)
        print(summary_markdown(summary))
        print(f"corpus: {args.out_dir} ({time.time() - start:.1f} s)")

    return run_cli(body, PROG)


if __name__ == "__main__":
    sys.exit(main())
