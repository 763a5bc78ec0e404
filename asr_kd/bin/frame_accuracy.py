"""`asr-kd frame-accuracy`: frame accuracy and cross-entropy of a model against alignments.

Examples:
  asr-kd frame-accuracy --model exp/member1/final.pt --frame-bank exp/bank/dev
  asr-kd frame-accuracy --model exp/member1/final.pt \\
      --cuts exp/gmm/tri2/ali/cuts_test-clean.jsonl.gz --cmvn exp/data/fbank/cmvn.json
Prints one JSON line {"accuracy", "cross_entropy", "num_frames"}; --output also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import torch

from asr_kd.bin.common import run_cli
from asr_kd.data.frame_bank import FrameBank
from asr_kd.models import FrameClassifier
from asr_kd.score.frame_accuracy import frame_accuracy_bank, frame_accuracy_cuts
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd frame-accuracy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="FrameClassifier checkpoint (final.pt, best.pt, ...)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cuts", type=Path, help="aligned lhotse cuts (features + pdf_ids)")
    src.add_argument("--frame-bank", type=Path, help="a frame bank directory (CMVN already applied)")
    p.add_argument("--cmvn", type=Path, help="CMVN stats applied to the cuts' features (with --cuts)")
    p.add_argument("--label-field", default="pdf_ids", help="custom field of the cuts holding the labels")
    p.add_argument("--subset-fraction", type=float, default=1.0,
                   help="with --frame-bank: score only this seeded fraction of its utterances (as `asr-kd train` "
                        "picks them with the same --subset-seed), e.g. the 3%% training subset's accuracy")
    p.add_argument("--subset-seed", type=int, default=0, help="seed choosing the subset's utterances")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch-size", type=int, default=8192, help="frames per forward pass")
    p.add_argument("--output", type=Path, help="also write the result as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Score a model's frame accuracy on cuts or a frame bank."""
    args = get_parser().parse_args(argv)

    def body() -> None:
        setup_logging()
        device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else ("cpu" if args.device == "auto" else args.device))
        model = FrameClassifier.load(args.model, map_location=device)
        if args.frame_bank is not None:
            if args.cmvn is not None:
                raise InputError("--cmvn applies to --cuts only: a frame bank already has CMVN applied")
            bank = FrameBank.load(args.frame_bank, device)
            if bank.feat_dim != model.config.feat_dim:
                raise InputError(f"{args.frame_bank}: feat_dim {bank.feat_dim} != the model's {model.config.feat_dim}")
            if bank.num_classes > model.config.num_outputs:
                raise InputError(f"{args.frame_bank}: {bank.num_classes} classes but the model has "
                                 f"{model.config.num_outputs} outputs")
            frames = bank.subset_frames(args.subset_fraction, args.subset_seed) if args.subset_fraction < 1 else None
            result = frame_accuracy_bank(model, bank, batch_size=args.batch_size, amp=device.type == "cuda",
                                         frame_idx=frames)
        else:
            from lhotse import CutSet

            if args.subset_fraction < 1:
                raise InputError("--subset-fraction applies to --frame-bank only")

            if not args.cuts.is_file():
                raise InputError(f"{args.cuts}: no such cuts manifest")
            result = frame_accuracy_cuts(model, CutSet.from_file(args.cuts), cmvn=args.cmvn,
                                         label_field=args.label_field, device=device, batch_size=args.batch_size)
        print(json.dumps(result.as_dict()))
        if args.output is not None:
            atomic_write_json(args.output, result.as_dict())

    return run_cli(body, "asr-kd frame-accuracy")


if __name__ == "__main__":
    sys.exit(main())
