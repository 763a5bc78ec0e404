"""Train the GMM-HMM systems: monophone (flat start), tri1 and tri2 (decision-tree triphones).

Example:
  python -m asr_kd.bin.train_gmm --exp-dir exp --lang-dir exp/lang
writes exp/gmm/{mono,tri1,tri2}/{tree,final.mdl,ali_train.npz,info.json}; finished systems are
skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_alignment_options, add_trust_pickle_option, run_cli
from asr_kd.gmm.stages import SYSTEMS, GmmConfig, train_systems
from asr_kd.utils import setup_logging


def get_parser() -> argparse.ArgumentParser:
    d = GmmConfig()
    p = argparse.ArgumentParser(prog="asr-kd train-gmm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True, help="experiment directory (outputs go to <exp>/gmm/)")
    p.add_argument("--lang-dir", type=Path, required=True, help="Kaldi lang directory (topo, L.fst, words.txt ...)")
    p.add_argument("--cuts", type=Path, default=None,
                   help="training fbank cuts (default <exp>/data/fbank/cuts_train-clean-100.jsonl.gz)")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), help="systems to train, in order")
    p.add_argument("--mono-iters", type=int, default=d.mono_iters, help="EM iterations of the monophone system")
    p.add_argument("--mono-gauss", type=int, default=d.mono_gauss, help="total Gaussians of the monophone system")
    p.add_argument("--mono-utts", type=int, default=d.mono_utts,
                   help="train the monophone system on this many shortest utterances (0: all)")
    p.add_argument("--tri1-iters", type=int, default=d.tri1_iters, help="EM iterations of tri1")
    p.add_argument("--tri1-leaves", type=int, default=d.tri1_leaves, help="tree leaves (tied states) of tri1")
    p.add_argument("--tri1-gauss", type=int, default=d.tri1_gauss, help="total Gaussians of tri1")
    p.add_argument("--tri2-iters", type=int, default=d.tri2_iters, help="EM iterations of tri2")
    p.add_argument("--tri2-leaves", type=int, default=d.tri2_leaves, help="tree leaves (tied states) of tri2")
    p.add_argument("--tri2-gauss", type=int, default=d.tri2_gauss, help="total Gaussians of tri2")
    p.add_argument("--tri2-features", choices=("lda-mllt", "deltas"), default=d.tri2_features,
                   help="tri2 on LDA+MLLT of spliced MFCC (Kaldi's tri2b) or on MFCC + deltas")
    p.add_argument("--cmvn", choices=("speaker", "global", "none"), default=d.cmvn, help="cepstral mean normalisation")
    add_alignment_options(p, d)
    add_trust_pickle_option(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        setup_logging(args.exp_dir / "gmm" / "log" / "train_gmm.log")
        config = GmmConfig(mono_iters=args.mono_iters, mono_gauss=args.mono_gauss, mono_utts=args.mono_utts or None,
                           tri1_iters=args.tri1_iters, tri1_leaves=args.tri1_leaves, tri1_gauss=args.tri1_gauss,
                           tri2_iters=args.tri2_iters, tri2_leaves=args.tri2_leaves, tri2_gauss=args.tri2_gauss,
                           tri2_features=args.tri2_features, cmvn=args.cmvn, num_workers=args.num_workers,
                           beam=args.beam, retry_beam=args.retry_beam)
        cuts = args.cuts or args.exp_dir / "data" / "fbank" / "cuts_train-clean-100.jsonl.gz"
        train_systems(args.exp_dir, args.lang_dir, cuts, args.systems, config)

    return run_cli(body, "asr-kd train-gmm", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
