"""Check a LibriSpeech-layout corpus, write lhotse manifests, compute 40-dim fbank and CMVN stats.

Example:
  asr-kd prepare-data --corpus-dir data/corpus --exp-dir exp/synth-mini --num-workers 2
  asr-kd prepare-data --corpus-dir /data --exp-dir exp/ls --parts train-clean-100 train-clean-360 dev-clean \
      test-clean --train-parts train-clean-100 train-clean-360
(the second also writes cuts_train-clean-100+train-clean-360.jsonl.gz, the training set).
  asr-kd prepare-data --corpus-dir /data --exp-dir exp/ls --parts train-clean-100 dev-clean test-clean \
      --decode-parts dev-clean test-clean
(dev and test audio at 8, 22.05 or 44.1 kHz is then resampled to 16 kHz; training audio must be 16 kHz).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.data.features import compute_cmvn_stats, compute_fbank, join_parts
from asr_kd.data.prepare import DEFAULT_PARTS, prepare_manifests
from asr_kd.utils.errors import InputError
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-kd prepare-data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", type=Path, required=True,
                        help="LibriSpeech/ itself or the directory that holds it")
    parser.add_argument("--exp-dir", type=Path, required=True,
                        help="experiment dir; writes data/manifests and data/fbank under it")
    parser.add_argument("--parts", nargs="+", default=list(DEFAULT_PARTS),
                        help="corpus parts; the first is the training part (CMVN source) unless --train-parts")
    parser.add_argument("--train-parts", nargs="+",
                        help="the training parts among --parts: several are joined into one training set "
                             "cuts_<p1>+<p2>...jsonl.gz, the CMVN source")
    parser.add_argument("--decode-parts", nargs="*", default=[],
                        help="the parts among --parts that are only decoded: their audio may have any sample rate "
                             "and is resampled to 16 kHz through lhotse (logged, and recorded in the cuts); "
                             "audio of the other parts must be 16 kHz")
    parser.add_argument("--num-workers", type=int, default=2, help="parallel feature-extraction processes")
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
        train_parts = args.train_parts or args.parts[:1]
        for option, named in (("--train-parts", train_parts), ("--decode-parts", args.decode_parts)):
            unknown = [p for p in named if p not in args.parts]
            if unknown:
                raise InputError(f"{option} {' '.join(unknown)}: not among --parts {' '.join(args.parts)}")
        trained = set(train_parts) & set(args.decode_parts)
        if trained:
            raise InputError(f"--decode-parts {' '.join(sorted(trained))}: also a training part")
        prepare_manifests(args.corpus_dir, manifest_dir, args.parts, args.skip_bad_audio, args.num_workers,
                          resample_parts=args.decode_parts)
        compute_fbank(manifest_dir, fbank_dir, args.parts, args.num_workers, resample_parts=args.decode_parts)
        train_set, parts = train_parts[0], list(args.parts)
        if len(train_parts) > 1:
            train_set = "+".join(train_parts)
            join_parts(fbank_dir, train_parts, train_set)
            parts.append(train_set)
        compute_cmvn_stats(fbank_dir, train_set, parts)

    return run_cli(body, "asr-kd prepare-data")


if __name__ == "__main__":
    sys.exit(main())
