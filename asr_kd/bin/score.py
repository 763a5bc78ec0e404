"""Score recognition hypotheses: word error rate with Kaldi-style reports.

Transcripts are Kaldi `text` / LibriSpeech `trans.txt` files ("UTT-ID WORD WORD ...").

One hypothesis file:
  asr-kd score --ref data/dev_text --hyp exp/decode/baseline/dev/scoring/10.txt [--out-dir exp/scores]
Choose the LM weight on dev (Kaldi's score.sh), apply it to test; a decoded part's directory holds
scoring/<lmwt>.txt, one file per LM weight (the layout decode-nnet and decode-gmm write):
  asr-kd score --ref dev_text --hyp exp/decode/baseline/dev --test-ref test_text \\
      --test-hyp exp/decode/baseline/test --out-dir exp/scores
Writes wer_<lmwt>, per_utt_dev.txt / per_utt_test.txt (ref/hyp/op rows), wer_summary.{txt,md,json}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.utils.errors import InputError
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-kd score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", type=Path, nargs="+", action="extend", required=True,
                        help="reference transcript files (one or more, e.g. every trans.txt of a part)")
    parser.add_argument("--hyp", type=Path, required=True,
                        help="hypothesis file, or a decoded part's dir with scoring/<lmwt>.txt to choose from")
    parser.add_argument("--test-ref", type=Path, nargs="+", action="extend", default=[],
                        help="test references; with --test-hyp, scored at the LM weight chosen on --ref/--hyp")
    parser.add_argument("--test-hyp", type=Path, help="test part's decode dir with scoring/<lmwt>.txt")
    parser.add_argument("--out-dir", type=Path, help="where to write the reports (default: print only)")
    parser.add_argument("--strict", action="store_true",
                        help="an utterance without a hypothesis is an error (default: counts as all deletions)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()

    def body() -> None:
        from asr_kd.score.wer import compute_wer, read_hyps_by_lmwt, read_transcripts, score_dev_test

        refs = read_transcripts(args.ref)
        if args.hyp.is_dir():
            if bool(args.test_ref) != (args.test_hyp is not None):
                raise InputError("give both --test-ref and --test-hyp, or neither")
            if args.out_dir is None:
                raise InputError("choosing an LM weight writes reports: give --out-dir")
            test_refs = read_transcripts(args.test_ref) if args.test_ref else None
            test_hyps = read_hyps_by_lmwt(args.test_hyp) if args.test_hyp else None
            score_dev_test(args.out_dir, refs, read_hyps_by_lmwt(args.hyp), test_refs, test_hyps)
            print((args.out_dir / "wer_summary.txt").read_text(), end="")
            return
        if args.test_hyp is not None or args.test_ref:
            raise InputError("--test-ref/--test-hyp need --hyp to be a decoded part's dir with scoring/<lmwt>.txt")
        result = compute_wer(refs, read_transcripts(args.hyp), missing="error" if args.strict else "empty")
        if args.out_dir is not None:
            from asr_kd.utils.io import atomic_write_json, atomic_write_text

            atomic_write_text(args.out_dir / "wer", result.summary() + "\n")
            atomic_write_text(args.out_dir / "per_utt.txt", result.per_utt_text())
            atomic_write_json(args.out_dir / "wer.json", result.to_dict())
        print(result.summary())

    return run_cli(body, "asr-kd score")


if __name__ == "__main__":
    sys.exit(main())
