"""`asr-kd frame-accuracy`: frame accuracy and cross-entropy against forced alignments.

--model takes one FrameClassifier checkpoint or .onnx export, or several: an ensemble, scored by
the arithmetic mean of its members' posteriors (as `asr-kd decode-nnet` decodes it). The data are
frame banks (CMVN already applied) or aligned lhotse cuts with --cmvn; one --output JSON per
bank or cuts file. An output that exists is kept (the recipe's stages rerun cheaply) unless
--overwrite. --per-member also scores each member alone and the geometric mean (paper Table 1:
one model vs the ensemble); --specialists scores a generalist combined with its specialists. --subset-fraction/--subset-seed score only the utterances that
`asr-kd train` selects with the same options (the 3% subset's own train accuracy, paper Table 5).
--teacher also measures how near the model is to a teacher ensemble on the bank's frames at
--temperature: mean KL(teacher || model), arg-max agreement and the teacher's entropy (whether a
student matches its teacher on its transfer set, and off it).

Examples:
  asr-kd frame-accuracy --model exp/nnet/baseline/final.pt --frame-bank exp/bank/dev exp/bank/test \\
      --output exp/results/acc_baseline_dev.json exp/results/acc_baseline_test.json
  asr-kd frame-accuracy --model exp/nnet/member{1..10}/final.pt --frame-bank exp/bank/test --per-member
  asr-kd frame-accuracy --model exp/nnet/student/final.pt --frame-bank exp/bank/train exp/bank/dev \\
      --subset-fraction 0.05 --teacher exp/nnet/member{1..10}/final.pt --temperature 2
  asr-kd frame-accuracy --model exp/nnet/baseline/final.pt \\
      --cuts exp/gmm/tri2/ali/cuts_test-clean.jsonl.gz --cmvn exp/data/fbank/cmvn.json
Prints one JSON line per data set: {"accuracy", "cross_entropy", "num_frames", ...}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.bin.scorer_options import add_amp_option, add_specialist_options, make_scorer
from asr_kd.utils.device import resolve_device
from asr_kd.decode.scorer import HybridScorer
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd frame-accuracy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, nargs="+",
                   help="checkpoint(s) (final.pt, best.pt, epoch-N.pt) or .onnx exports; several = an ensemble")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--frame-bank", type=Path, nargs="+", help="frame bank directories")
    src.add_argument("--cuts", type=Path, nargs="+", help="aligned lhotse cuts (features + pdf_ids)")
    p.add_argument("--cmvn", type=Path, help="CMVN stats applied to the cuts' features (with --cuts)")
    p.add_argument("--label-field", default="pdf_ids", help="custom field of the cuts holding the labels")
    p.add_argument("--output", type=Path, nargs="+", help="a JSON file per --frame-bank / --cuts")
    p.add_argument("--per-member", action="store_true",
                   help="with several models and a frame bank: also each member alone and the geometric mean")
    p.add_argument("--subset-fraction", type=float, default=1.0,
                   help="with --frame-bank: only this seeded fraction of its utterances, as `asr-kd train` picks them")
    p.add_argument("--subset-seed", type=int, default=0, help="seed choosing the subset's utterances")
    p.add_argument("--teacher", type=Path, nargs="+",
                   help="with --frame-bank: teacher member checkpoints; adds the model's KL to and agreement with "
                        "their arithmetic-mean ensemble")
    p.add_argument("--temperature", type=float, default=2.0, help="temperature of both sides of --teacher's KL")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch-size", type=int, default=8192, help="frames per forward pass")
    p.add_argument("--overwrite", action="store_true", help="rescore even where --output exists")
    add_amp_option(p)
    add_specialist_options(p)
    add_trust_pickle_option(p)
    return p


def _score_bank(args: argparse.Namespace, scorer: HybridScorer, bank_dir: Path, device: torch.device) -> dict[str, Any]:
    from asr_kd.data.frame_bank import FrameBank
    from asr_kd.score.frame_accuracy import frame_accuracy_bank

    bank = FrameBank.load(bank_dir, device)
    if bank.feat_dim != scorer.feat_dim or bank.num_classes > scorer.num_outputs:
        raise InputError(f"{bank_dir}: feat_dim {bank.feat_dim} / {bank.num_classes} classes do not fit the "
                         f"model's {scorer.feat_dim} / {scorer.num_outputs}")
    subset = args.subset_fraction < 1.0
    idx = bank.subset_frames(args.subset_fraction, args.subset_seed) if subset else None
    record = frame_accuracy_bank(scorer.log_posteriors_windows, bank, scorer.left, scorer.right,
                                 batch_size=args.batch_size, frame_idx=idx).as_dict()
    record |= {"frame_bank": str(bank_dir), "subset_fraction": args.subset_fraction, "subset_seed": args.subset_seed,
               "utterances": max(1, round(args.subset_fraction * bank.num_utterances)) if subset else bank.num_utterances}
    if args.per_member and len(args.model) > 1:
        from asr_kd.distill.ensemble import EnsembleTeacher, ensemble_frame_accuracy

        teacher = EnsembleTeacher.load(args.model, device)
        per = ensemble_frame_accuracy(teacher, bank, batch_size=args.batch_size, device=device,
                                      frame_idx=None if idx is None else torch.as_tensor(idx))
        record["members"] = [per[f"member{i + 1}"] for i in range(len(args.model))]
        record["geometric_mean_accuracy"] = per["geometric"]
    if args.teacher:
        from asr_kd.distill.ensemble import EnsembleTeacher, teacher_agreement

        teacher = EnsembleTeacher.load([str(p) for p in args.teacher], device)
        near = teacher_agreement(scorer.log_posteriors_windows, teacher, bank, scorer.left, scorer.right,
                                 temperature=args.temperature, frame_idx=idx, batch_size=args.batch_size,
                                 amp=scorer.amp)
        record["teacher"] = near.as_dict() | {"models": [str(p) for p in args.teacher]}
    return record


def _score_cuts(args: argparse.Namespace, scorer: HybridScorer, cuts_path: Path, device: torch.device) -> dict[str, Any]:
    from lhotse import CutSet

    from asr_kd.score.frame_accuracy import frame_accuracy_cuts

    if not cuts_path.is_file():
        raise InputError(f"{cuts_path}: no such cuts manifest")
    acc = frame_accuracy_cuts(scorer.log_posteriors_windows, CutSet.from_file(cuts_path), cmvn=args.cmvn,
                              left=scorer.left, right=scorer.right, label_field=args.label_field,
                              device=device, batch_size=args.batch_size)
    return acc.as_dict() | {"cuts": str(cuts_path)}


def main(argv: Sequence[str] | None = None) -> int:
    """Score a model's (or an ensemble's) frame accuracy on frame banks or aligned cuts."""
    args = get_parser().parse_args(argv)
    command = "asr-kd frame-accuracy " + shlex.join(str(a) for a in (sys.argv[1:] if argv is None else argv))

    def body() -> None:
        from asr_kd.utils.hardware import describe_hardware

        setup_logging()
        sources = args.frame_bank or args.cuts
        if args.frame_bank and args.cmvn is not None:
            raise InputError("--cmvn applies to --cuts only: a frame bank already has CMVN applied")
        if args.cuts and (args.subset_fraction < 1 or args.per_member or args.teacher):
            raise InputError("--subset-fraction, --per-member and --teacher apply to --frame-bank only")
        outs = args.output or [None] * len(sources)
        if len(outs) != len(sources):
            raise InputError(f"give one --output per data set ({len(sources)} given, {len(outs)} outputs)")
        todo = [(src, out) for src, out in zip(sources, outs) if out is None or args.overwrite or not out.is_file()]
        if not todo:
            print(f"asr-kd frame-accuracy: {', '.join(map(str, outs))} exist (--overwrite rescores)", file=sys.stderr)
            return
        device = resolve_device(args.device)
        scorer = make_scorer(args, device)
        hardware = describe_hardware()
        for src, out in todo:
            record = (_score_bank if args.frame_bank else _score_cuts)(args, scorer, src, device)
            record |= {"models": [str(p) for p in args.model], "command": command, "hardware": hardware}
            print(json.dumps(record))
            if out is not None:
                atomic_write_json(out, record)

    return run_cli(body, "asr-kd frame-accuracy", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
