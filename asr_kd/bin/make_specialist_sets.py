"""`asr-kd make-specialist-sets`: group the classes a generalist confuses (Hinton et al. 2015, Section 5).

The generalist's posterior vectors over a seeded sample of training frames give the C x C covariance of
its predictions; K-means (k-means++ seeding) on the covariance's columns groups classes that are
predicted together. Each cluster, or with --set-size N the N classes nearest each centroid (sets then
overlap, as in the paper's JFT experiment where 61 specialists each took 300 classes), becomes one
specialist's class set. Writes the sets as JSON (--out) and the covariance as .npy beside it.

Example:
  asr-kd make-specialist-sets --model exp/nnet/baseline/final.pt --frame-bank exp/bank/train \\
      --num-specialists 12 --set-size 250 --out exp/specialists/sets.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path
from asr_kd.utils.logging import setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd make-specialist-sets", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="the generalist (FrameClassifier checkpoint)")
    p.add_argument("--frame-bank", type=Path, required=True, help="training frame bank the covariance is taken over")
    p.add_argument("--out", type=Path, required=True, help="sets file to write (JSON); covariance goes to OUT.cov.npy")
    p.add_argument("--num-frames", type=int, default=200000, help="frames sampled for the covariance (0: all)")
    p.add_argument("--num-specialists", type=int, default=12, help="K of K-means: number of specialists")
    p.add_argument("--set-size", type=int, default=0,
                   help="each specialist takes this many classes nearest its centroid (0: the disjoint clusters)")
    p.add_argument("--min-size", type=int, default=10, help="dissolve disjoint clusters smaller than this")
    p.add_argument("--no-normalize", action="store_true",
                   help="cluster the raw covariance columns (default: columns scaled to unit length)")
    p.add_argument("--seed", type=int, default=0, help="frame sample and K-means seeding")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--overwrite", action="store_true", help="redo even if --out exists")
    add_trust_pickle_option(p)
    return p


def body(args: argparse.Namespace) -> None:
    from asr_kd.data.frame_bank import FrameBank
    from asr_kd.distill.specialists.sets import make_specialist_sets, prediction_covariance
    from asr_kd.models import FrameClassifier

    if args.out.is_file() and not args.overwrite:
        log.info("%s exists (--overwrite redoes it)", args.out)
        return
    if args.num_specialists < 1:
        raise InputError(f"--num-specialists must be >= 1, got {args.num_specialists}")
    device = torch.device(args.device)
    model = FrameClassifier.load(args.model, map_location=device).eval()
    bank = FrameBank.load(args.frame_bank, device)
    if (bank.feat_dim, bank.num_classes) != (model.config.feat_dim, model.config.num_outputs):
        raise InputError(f"{args.frame_bank}: feat_dim/classes {bank.feat_dim}/{bank.num_classes} differ from the "
                         f"model's {model.config.feat_dim}/{model.config.num_outputs}")
    n = bank.num_frames if args.num_frames <= 0 else min(args.num_frames, bank.num_frames)
    idx = torch.as_tensor(np.sort(np.random.default_rng(args.seed).choice(bank.num_frames, size=n, replace=False)),
                          device=device)
    cov = prediction_covariance(lambda w: model(w).float().log_softmax(-1),
                                lambda i: bank.splice(i, model.left_context, model.right_context), idx,
                                args.batch_size)
    sets = make_specialist_sets(cov.cpu(), args.num_specialists, set_size=args.set_size, min_size=args.min_size,
                                normalize=not args.no_normalize, seed=args.seed)
    sets.info.update(model=str(args.model), frame_bank=str(args.frame_bank), num_frames=n)
    with atomic_path(args.out.with_suffix(".cov.npy")) as tmp:
        np.save(tmp, cov.float().numpy())
    sets.save(args.out)
    cover = np.bincount(np.minimum(sets.coverage(), 3), minlength=4)
    print(f"{len(sets)} specialist sets (sizes {sorted(len(s) for s in sets.sets)}); classes in 0/1/2/3+ sets: "
          f"{cover.tolist()} -> {args.out}")


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def run() -> None:
        setup_logging()
        body(args)

    return run_cli(run, "asr-kd make-specialist-sets", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
