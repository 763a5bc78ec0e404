"""Store an ensemble teacher's top-k posteriors at temperature T for every frame of a frame bank.

The members' distributions at T are averaged (arithmetic or geometric mean, optionally with
per-teacher weights), the k largest probabilities per frame, their pdf-ids and the mass they hold
are kept (fp16 + int16/int32 + fp32: ~290 MB per hour of audio at k=200; --top-k auto picks the
smallest k that keeps the soft-target loss within 0.5% of the dense teacher's), and a manifest records
the teachers' checksums, T, k and the frame bank's checksum so that training can refuse stale
targets. Training spreads the dropped mass uniformly over the other classes. The store's fidelity
(soft-loss error against the dense teacher on a sample of frames, per tail model) is measured and
printed; `asr-kd train` refuses a store that keeps under 90% of the mass on average. Rerunning
with the same options skips a finished store; an interrupted run resumes from its last completed chunk.

A --teacher that is a GMM system directory (one holding final.mdl, e.g. exp/gmm/tri2) is a GMM
teacher: its frame posteriors softmax(a * loglike + log prior) over its pdfs, a = --gmm-acoustic-scale
(GMM likelihoods are far too peaky without it; Kaldi decodes GMMs at 0.1), prior = the pdf
occupancy of its training alignment. Its features are made from the cuts of --gmm-cuts (default:
the frame bank's source cuts) with the frame bank's frame count per cut. GMMs and checkpoints mix
freely, --teacher-weights giving each its share; the manifest records each GMM and its scale.

Example:
  asr-kd make-soft-targets --teacher exp/member{1..10}/final.pt \\
      --frame-bank exp/bank/train --temperature 2 --top-k 20 --out-dir exp/soft_targets/T2
  asr-kd make-soft-targets --teacher exp/member1/final.pt exp/member2/final.pt \\
      --teacher-weights 0.7 0.3 --frame-bank exp/bank/train --out-dir exp/soft_targets/T2_weighted
  asr-kd make-soft-targets --teacher exp/gmm/tri2 exp/member{1..3}/final.pt --teacher-weights 0.2 0.8 0.8 0.8 \\
      --frame-bank exp/bank/train --gmm-cuts exp/gmm/tri2/ali/cuts_train-clean-100.jsonl.gz --out-dir exp/soft_gmm_T2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_trust_pickle_option, config_defaults, config_from_args, run_cli
from asr_kd.distill.soft_targets import SoftTargetConfig, make_soft_targets
from asr_kd.utils.device import AMP_CHOICES


def get_parser() -> argparse.ArgumentParser:
    """Options of the soft-target store, one per SoftTargetConfig field (defaults from it)."""
    parser = argparse.ArgumentParser(prog="asr-kd make-soft-targets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, nargs="+", required=True,
                        help="checkpoints of the ensemble members (FrameClassifier.save files), and/or GMM "
                             "system directories (with final.mdl) as GMM teachers")
    parser.add_argument("--frame-bank", type=Path, required=True, help="frame bank directory to label")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the store is written")
    parser.add_argument("--temperature", type=float, help="softmax temperature T (paper: 2)")
    parser.add_argument("--top-k",
                        help="probabilities kept per frame (all of them when the bank has fewer classes), or 'auto': "
                             "the smallest of 20, 50, 100, 200, 300, ... that keeps the soft-target loss within "
                             "--max-loss-error of the dense teacher's on a sample of frames")
    parser.add_argument("--max-loss-error", type=float,
                        help="with --top-k auto: the relative soft-loss error allowed")
    parser.add_argument("--mean", choices=["arithmetic", "geometric"],
                        help="how member distributions are combined")
    parser.add_argument("--teacher-weights", type=float, nargs="+", metavar="W",
                        help="one weight per --teacher for a weighted mean (normalised to sum 1; "
                             "default: equal weights); recorded in the store's manifest")
    parser.add_argument("--gmm-acoustic-scale", type=float,
                        help="GMM teachers: scale of the log-likelihoods before adding the log prior (Kaldi: 0.1)")
    parser.add_argument("--gmm-cuts", type=Path,
                        help="GMM teachers: lhotse cuts with the fbank of the bank's utterances (speaker CMVN over "
                             "them; default: the frame bank's source_cuts)")
    parser.add_argument("--batch-size", type=int, help="frames per teacher forward")
    parser.add_argument("--chunk-frames", type=int, help="frames between progress checkpoints (resume granularity)")
    parser.add_argument("--device", help="device that runs the teacher: auto, cpu, cuda, cuda:N")
    parser.add_argument("--amp", choices=AMP_CHOICES,
                        help="bf16 autocast of the teacher (auto: where the GPU or CPU has bf16 units)")
    add_trust_pickle_option(parser)
    parser.set_defaults(**config_defaults(SoftTargetConfig))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options and make the store; bad input exits with 2."""
    config = config_from_args(SoftTargetConfig, get_parser().parse_args(argv))
    return run_cli(lambda: make_soft_targets(config), "asr-kd make-soft-targets")


if __name__ == "__main__":
    sys.exit(main())
