"""Test errors of an MNIST model, per digit, against its teacher, and after a bias adjustment.

Writes a JSON file with the errors on the test bank (in all and per true digit), how many test
images the model and --teacher label differently, and, with --bias-classes, a sweep of the
output-bias shift of those digits (--bias-direction up: +s, down: -s, s from 0 to --bias-max in
--bias-step) with the shift that is best on the test set, as in the paper (sec. 3: +3.5 on the
3-bias of the student that never saw a 3; 7.6 off the 7/8 biases of the student that saw only 7s
and 8s). Example:
  asr-kd mnist-eval --model exp/mnist/transfer_no3/final.pt --test-bank exp/mnist/data/test \\
      --bias-classes 3 --bias-direction up --out exp/mnist/results/transfer_no3.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.data.frame_bank import FrameBank
from asr_kd.data.mnist import NUM_CLASSES, bias_sweep, error_counts, model_logits
from asr_kd.models.frame_classifier import FrameClassifier
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json, read_json


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd mnist-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="FrameClassifier checkpoint (final.pt)")
    p.add_argument("--test-bank", type=Path, required=True, help="MNIST test frame bank (asr-kd mnist-prepare)")
    p.add_argument("--out", type=Path, required=True, help="JSON file written")
    p.add_argument("--teacher", type=Path, help="teacher checkpoint: count test images labelled differently")
    p.add_argument("--bias-classes", type=int, nargs="+", default=[], help="digits whose output bias is swept")
    p.add_argument("--bias-direction", choices=["up", "down"], default="up", help="raise or lower those biases")
    p.add_argument("--bias-max", type=float, default=15.0, help="largest shift tried")
    p.add_argument("--bias-step", type=float, default=0.1, help="shift grid step")
    add_trust_pickle_option(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        if args.out.is_file() and read_json(args.out).get("model") == str(args.model):
            return  # done before
        if any(not 0 <= c < NUM_CLASSES for c in args.bias_classes):
            raise InputError(f"--bias-classes must be digits 0..9, got {args.bias_classes}")
        if args.bias_step <= 0 or args.bias_max < 0:
            raise InputError("--bias-step must be > 0 and --bias-max >= 0")
        bank = FrameBank.load(args.test_bank)
        if bank.feat_dim != 784 or bank.num_classes != NUM_CLASSES:
            raise InputError(f"{args.test_bank}: not an MNIST bank ({bank.feat_dim}-d, {bank.num_classes} classes)")
        images, labels = bank.feats.float(), bank.labels.long()
        model = FrameClassifier.load(args.model)
        logits = model_logits(model, images)
        errors, per_class = error_counts(logits, labels)
        result = {"model": str(args.model), "test_images": int(labels.numel()),
                  "test_per_class": np.bincount(labels.numpy(), minlength=NUM_CLASSES).tolist(),
                  "errors": errors, "error_rate": errors / labels.numel(), "errors_per_class": per_class}
        if args.teacher is not None:
            teacher_logits = model_logits(FrameClassifier.load(args.teacher), images)
            result["teacher"] = str(args.teacher)
            result["disagreements_with_teacher"] = int((teacher_logits.argmax(-1) != logits.argmax(-1)).sum())
        if args.bias_classes:
            sign = 1.0 if args.bias_direction == "up" else -1.0
            grid = np.round(np.arange(0.0, args.bias_max + 1e-9, args.bias_step), 6)
            sweep = bias_sweep(logits, labels, args.bias_classes, sign * grid)
            best_shift, _ = min(sweep, key=lambda se: (se[1], abs(se[0])))  # ties: the smallest shift
            shifted = logits.clone()
            shifted[:, args.bias_classes] += best_shift
            best_errors, best_per_class = error_counts(shifted, labels)
            result["bias"] = {"classes": args.bias_classes, "direction": args.bias_direction,
                              "best_shift": best_shift, "errors": best_errors,
                              "error_rate": best_errors / labels.numel(), "errors_per_class": best_per_class,
                              "sweep": sweep}
        atomic_write_json(args.out, result)
        print(f"{args.model}: {errors} test errors ({100 * errors / labels.numel():.2f}%)"
              + (f"; bias {result['bias']['best_shift']:+.1f} on {args.bias_classes}: {result['bias']['errors']}"
                 if args.bias_classes else ""))

    return run_cli(body, "asr-kd mnist-eval", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
