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
import logging
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.utils.device import AMP_CHOICES, autocast, resolve_device, use_bf16
from asr_kd.utils.errors import InputError
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr-kd make-soft-targets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, nargs="+", required=True,
                        help="checkpoints of the ensemble members (FrameClassifier.save files), and/or GMM "
                             "system directories (with final.mdl) as GMM teachers")
    parser.add_argument("--frame-bank", type=Path, required=True, help="frame bank directory to label")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the store is written")
    parser.add_argument("--temperature", type=float, default=2.0, help="softmax temperature T (paper: 2)")
    parser.add_argument("--top-k", default="auto",
                        help="probabilities kept per frame (all of them when the bank has fewer classes), or 'auto': "
                             "the smallest of 20, 50, 100, 200, 300, ... that keeps the soft-target loss within "
                             "--max-loss-error of the dense teacher's on a sample of frames")
    parser.add_argument("--max-loss-error", type=float, default=0.005,
                        help="with --top-k auto: the relative soft-loss error allowed")
    parser.add_argument("--mean", choices=["arithmetic", "geometric"], default="arithmetic",
                        help="how member distributions are combined")
    parser.add_argument("--teacher-weights", type=float, nargs="+", metavar="W",
                        help="one weight per --teacher for a weighted mean (normalised to sum 1; "
                             "default: equal weights); recorded in the store's manifest")
    parser.add_argument("--gmm-acoustic-scale", type=float, default=0.1,
                        help="GMM teachers: scale of the log-likelihoods before adding the log prior (Kaldi: 0.1)")
    parser.add_argument("--gmm-cuts", type=Path,
                        help="GMM teachers: lhotse cuts with the fbank of the bank's utterances (speaker CMVN over "
                             "them; default: the frame bank's source_cuts)")
    parser.add_argument("--batch-size", type=int, default=8192, help="frames per teacher forward")
    parser.add_argument("--chunk-frames", type=int, default=1 << 20,
                        help="frames between progress checkpoints (resume granularity)")
    parser.add_argument("--device", default="auto", help="device that runs the teacher: auto, cpu, cuda, cuda:N")
    parser.add_argument("--amp", choices=AMP_CHOICES, default="auto",
                        help="bf16 autocast of the teacher (auto: where the GPU or CPU has bf16 units)")
    add_trust_pickle_option(parser)
    return parser


def gmm_cuts(path: Path | None, bank) -> tuple[object, str]:
    """The cuts GMM teachers make their features from: --gmm-cuts, else the bank's source_cuts; and their name."""
    from lhotse import CutSet

    if path is None:
        source = bank.manifest.get("source_cuts")
        if not source:
            raise InputError(f"{bank.directory}: records no source_cuts; give --gmm-cuts")
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{path}: the frame bank's source cuts are not found from here; give --gmm-cuts")
    if not path.is_file():
        raise InputError(f"{path}: no such cuts manifest (--gmm-cuts)")
    return CutSet.from_file(path), str(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        from asr_kd.data.frame_bank import FrameBank
        from asr_kd.distill.ensemble import EnsembleTeacher
        from asr_kd.distill.soft_targets import SoftTargetStore, choose_top_k

        if args.temperature <= 0:
            raise InputError(f"--temperature must be > 0, got {args.temperature}")
        if args.batch_size < 1 or args.chunk_frames < 1:
            raise InputError("--batch-size and --chunk-frames must be positive")
        if args.teacher_weights is not None and len(args.teacher_weights) != len(args.teacher):
            raise InputError(f"--teacher-weights: {len(args.teacher_weights)} weights for "
                             f"{len(args.teacher)} --teacher checkpoints")
        from asr_kd.distill.gmm_teacher import MixedTeacher, is_gmm_system

        setup_logging(args.out_dir / "log" / "make_soft_targets.log")
        device = resolve_device(args.device)
        bank = FrameBank.load(args.frame_bank, device)
        if any(is_gmm_system(p) for p in args.teacher):
            teacher = MixedTeacher.load(args.teacher, device, mean=args.mean, weights=args.teacher_weights,
                                        acoustic_scale=args.gmm_acoustic_scale)
            teacher.attach(bank, *gmm_cuts(args.gmm_cuts, bank))
        else:
            teacher = EnsembleTeacher.load(args.teacher, device, mean=args.mean, weights=args.teacher_weights)
        amp = use_bf16(args.amp, device)
        if args.top_k == "auto":
            with autocast(device, amp):
                k, fidelity = choose_top_k(teacher, bank, args.temperature, args.max_loss_error, device,
                                           args.batch_size)
            logging.getLogger("asr-kd make-soft-targets").info(
                "--top-k auto: k=%d keeps %.2f%% of the mass, soft-loss error %.2f%% (bound %.2f%%)", k,
                100 * fidelity["mean_kept_mass"], 100 * fidelity["tails"]["uniform"]["loss_rel_error"],
                100 * args.max_loss_error)
        else:
            try:
                k = int(args.top_k)
            except ValueError as err:
                raise InputError(f"--top-k must be a positive integer or 'auto', got {args.top_k!r}") from err
            if k < 1:
                raise InputError(f"--top-k must be positive, got {k}")
        store = SoftTargetStore.write(teacher, bank, args.out_dir, args.temperature, min(k, bank.num_classes),
                                      args.batch_size, device, chunk_frames=args.chunk_frames, amp=amp)
        fidelity = store.manifest.get("fidelity", {}).get("tails", {}).get(store.tail, {})
        logging.getLogger("asr-kd make-soft-targets").info(
            "%s: %d frames, %d members, T=%g, top-%d keeps %.1f%% of the mass on average; soft-loss error "
            "against the dense teacher with the %s tail: %.2f%%", args.out_dir, store.num_frames,
            teacher.num_members, store.temperature, store.k, 100 * store.mean_kept_mass, store.tail,
            100 * fidelity.get("loss_rel_error", float("nan")))

    return run_cli(body, "asr-kd make-soft-targets", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
