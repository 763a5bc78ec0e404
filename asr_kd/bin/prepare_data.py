"""Check a LibriSpeech-layout corpus, write lhotse manifests, compute 40-dim fbank and CMVN stats.

Example:
  asr-kd prepare-data --corpus-dir data/corpus --exp-dir exp/synth-mini --num-jobs 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.data.features import compute_cmvn_stats, compute_fbank
from asr_kd.data.prepare import DEFAULT_PARTS, prepare_manifests
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-kd prepare-data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", type=Path, required=True,
                        help="LibriSpeech/ itself or the directory that holds it")
    parser.add_argument("--exp-dir", type=Path, required=True,
                        help="experiment dir; writes data/manifests and data/fbank under it")
    parser.add_argument("--parts", nargs="+", default=list(DEFAULT_PARTS),
                        help="corpus parts; the first is the training part (CMVN source)")
    parser.add_argument("--num-jobs", type=int, default=2, help="parallel feature-extraction processes")
    parser.add_argument("--skip-bad-audio", action="store_true",
                        help="leave out utterances with missing/empty/corrupt audio (counted warning) "
                             "instead of stopping with an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        setup_logging(args.exp_dir / "log" / "prepare_data.log")
        manifest_dir = args.exp_dir / "data" / "manifests"
        fbank_dir = args.exp_dir / "data" / "fbank"
        prepare_manifests(args.corpus_dir, manifest_dir, args.parts, args.skip_bad_audio, args.num_jobs)
        compute_fbank(manifest_dir, fbank_dir, args.parts, args.num_jobs)
        compute_cmvn_stats(fbank_dir, args.parts[0], args.parts)

    return run_cli(body, "asr-kd prepare-data")


if __name__ == "__main__":
    sys.exit(main())
