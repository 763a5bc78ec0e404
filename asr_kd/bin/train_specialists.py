"""`asr-kd train-specialists`: train one specialist per class set, initialised from the generalist.

Each specialist (Hinton et al. 2015, Section 5) has the generalist's hidden layers and outputs for its
set S plus a dustbin class (its row fitted so that it starts out carrying the generalist's mass outside
S). It is trained by `asr-kd train`'s trainer on frames half from S, half from the rest, with hard
labels remapped onto S + dustbin and the teacher's distribution (the generalist's by default, or an
ensemble's) collapsed onto S + dustbin as a regulariser. Afterwards the dustbin logit is raised by the
log of the oversampling of S (paper) or shifted to match the natural share of frames outside S
(default; see asr_kd.train.specialists). Writes <exp-dir>/spec<NN>/specialist.pt (and the
trainer's files); a finished specialist is skipped, an interrupted one resumes.

Example:
  asr-kd train-specialists --sets exp/specialists/sets.json --generalist exp/nnet/baseline/final.pt \\
      --frame-bank exp/bank --exp-dir exp/specialists --num-epochs 2
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.utils.device import resolve_device
from asr_kd.utils.errors import InputError
from asr_kd.utils.logging import setup_logging

log = logging.getLogger(__name__)


def specialist_dir(exp_dir: Path, m: int) -> Path:
    """Where specialist `m` (0-based index into the sets file) is trained."""
    return exp_dir / f"spec{m:02d}"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd train-specialists", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", type=Path, required=True, help="sets file from `asr-kd make-specialist-sets`")
    p.add_argument("--generalist", type=Path, required=True, help="generalist FrameClassifier checkpoint")
    p.add_argument("--frame-bank", type=Path, required=True, help="directory holding train/ and dev/ frame banks")
    p.add_argument("--exp-dir", type=Path, required=True, help="specialists go to EXP_DIR/specNN/")
    p.add_argument("--only", type=int, nargs="*", help="train only these specialists (0-based indices)")
    p.add_argument("--teacher", type=Path, nargs="*", default=[],
                   help="soft-target teacher checkpoints (an ensemble; default: the generalist)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="temperature of the soft targets (1: collapsing onto S + dustbin does not commute with T)")
    p.add_argument("--dustbin-correction", choices=["match", "paper", "none"], default="match",
                   help="after training: match = shift the dustbin logit so its mean probability on natural "
                        "frames is the share outside S; paper = add log of the oversampling of S")
    p.add_argument("--hard-weight", type=float, default=0.5, help="hard-label CE weight relative to the soft term")
    p.add_argument("--special-fraction", type=float, default=0.5,
                   help="share of each epoch's frames drawn from the specialist's classes (paper: half)")
    p.add_argument("--max-frames", type=int, default=0,
                   help="at most this many frames per epoch (a seeded sample of S, then as many others; 0: all of S)")
    p.add_argument("--num-epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--lr-schedule", choices=["newbob", "cosine", "constant"], default="newbob")
    p.add_argument("--fit-frames", type=int, default=10000, help="frames the dustbin row is fitted on")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    add_trust_pickle_option(p)
    return p


def body(args: argparse.Namespace) -> None:
    from asr_kd.distill.specialists.sets import SpecialistSets
    from asr_kd.train.specialists import SpecialistTraining, train_specialist
    from asr_kd.models.frame_classifier import read_checkpoint

    num_classes = int(read_checkpoint(args.generalist)["config"]["num_outputs"])
    sets = SpecialistSets.load(args.sets, num_classes)
    todo = range(len(sets)) if args.only is None else args.only
    for m in todo:
        if not 0 <= m < len(sets):
            raise InputError(f"--only {m}: {args.sets} has {len(sets)} sets (0..{len(sets) - 1})")
    if not 0 < args.special_fraction < 1:
        raise InputError(f"--special-fraction must be in (0, 1), got {args.special_fraction}")
    device = str(resolve_device(args.device))
    opts = SpecialistTraining(num_epochs=args.num_epochs, batch_size=args.batch_size, lr=args.lr,
                              optimizer=args.optimizer, lr_schedule=args.lr_schedule, temperature=args.temperature,
                              hard_weight=args.hard_weight, special_fraction=args.special_fraction,
                              max_frames=args.max_frames, dustbin_correction=args.dustbin_correction,
                              fit_frames=args.fit_frames, seed=args.seed, device=device)
    for m in todo:
        log.info("specialist %d of %d: %d classes", m, len(sets), len(sets.sets[m]))
        path = train_specialist(args.generalist, sets.sets[m], args.frame_bank / "train", args.frame_bank / "dev",
                                specialist_dir(args.exp_dir, m), opts, args.teacher)
        print(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def run() -> None:
        setup_logging()
        body(args)

    return run_cli(run, "asr-kd train-specialists", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
