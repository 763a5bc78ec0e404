"""`asr-kd build-frame-bank`: put all frames and pdf-id labels of aligned cuts into a frame bank.

Example:
  asr-kd build-frame-bank --cuts exp/gmm/tri2/ali/cuts_train-clean-100.jsonl.gz \\
      --cmvn exp/data/fbank/cmvn.json --out-dir exp/bank/train
The number of classes is read from info.json beside the cuts (the aligner's num_pdfs) unless
--num-classes is given. --unlabelled-cuts appends frames without alignments (label -1): a
transfer set that only a teacher labels, for `asr-kd make-soft-targets` and a student:
  asr-kd build-frame-bank --cuts exp/gmm/tri2/ali/cuts_train-clean-100.jsonl.gz \\
      --unlabelled-cuts exp/data/fbank/cuts_train-clean-360.jsonl.gz --cmvn exp/bank/cmvn.json --out-dir exp/bank/transfer
An existing complete bank is kept unless --overwrite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.data.frame_bank import FrameBank
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import read_json
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd build-frame-bank", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", required=True, type=Path, help="lhotse cuts with features and a pdf_ids alignment")
    p.add_argument("--out-dir", required=True, type=Path, help="frame bank directory to write")
    p.add_argument("--unlabelled-cuts", type=Path,
                   help="lhotse cuts with features and no alignment, appended as unlabelled frames")
    p.add_argument("--cmvn", type=Path,
                   help="CMVN stats (cmvn*.json of the features stage: global, speaker, speaker_mvn, "
                        "speaker_cepstral_mvn, speaker_cepstral_match or utterance mode)")
    p.add_argument("--num-classes", type=int, help="number of pdf-ids (default: num_pdfs of info.json beside --cuts)")
    p.add_argument("--label-field", default="pdf_ids", help="custom field of the cuts holding the labels")
    p.add_argument("--overwrite", action="store_true", help="rebuild even if a complete bank exists")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Build a frame bank from aligned cuts."""
    args = get_parser().parse_args(argv)

    def body() -> None:
        setup_logging()
        num_classes = args.num_classes
        info = args.cuts.parent / "info.json"
        if num_classes is None and info.is_file():
            num_classes = read_json(info).get("num_pdfs")
        if num_classes is not None and num_classes < 1:
            raise InputError(f"--num-classes must be positive, got {num_classes}")
        bank = FrameBank.build(args.cuts, args.out_dir, cmvn=args.cmvn, label_field=args.label_field,
                               num_classes=num_classes, overwrite=args.overwrite, unlabelled_cuts=args.unlabelled_cuts)
        print(bank)

    return run_cli(body, "asr-kd build-frame-bank")


if __name__ == "__main__":
    sys.exit(main())
