"""Train a classifier on an MNIST frame bank with the toolkit's trainer, plus the paper's input jitter.

Every option of `asr-kd train` applies unchanged (see `asr-kd train --help`); this verb adds
--jitter-pixels, which shifts each training image by a random whole number of pixels in
[-N, N] in each direction (Hinton et al. 2015, sec. 3: the teacher saw images jittered by up to
two pixels). Dev images are never jittered. Example (egs/mnist's teacher; the paper's used dropout 0.5):
  asr-kd mnist-train --exp-dir exp/teacher --train-bank exp/data/train --dev-bank exp/data/test \\
      --model-shape 2x1200 --left-context 0 --right-context 0 \\
      --dropout 0.3 --max-norm 3.5 --jitter-pixels 2 --batch-size 256 --lr 0.1 --optimizer sgd \\
      --lr-schedule cosine --num-epochs 80 --device cpu --amp auto
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from torch import Tensor

from asr_kd.bin.common import config_from_args
from asr_kd.bin.train import get_parser as get_train_parser
from asr_kd.bin.train import run_training
from asr_kd.data.mnist import jitter_images
from asr_kd.train.train import TrainConfig, TrainHooks, train
from asr_kd.utils.errors import InputError


def get_parser() -> argparse.ArgumentParser:
    """The trainer's options plus --jitter-pixels."""
    parser = get_train_parser()
    parser.prog = "asr-kd mnist-train"
    parser.description = __doc__
    parser.add_argument_group("mnist").add_argument(
        "--jitter-pixels", type=int, default=0, help="shift training images by up to this many pixels (0: off)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    config = config_from_args(TrainConfig, args)

    def body() -> None:
        if args.jitter_pixels < 0:
            raise InputError(f"--jitter-pixels must be >= 0, got {args.jitter_pixels}")
        if config.world_size > 1:
            raise InputError("mnist-train runs one process (MNIST is small); drop --world-size")
        hooks = TrainHooks()
        if args.jitter_pixels > 0:
            shift = args.jitter_pixels

            def jitter(inputs: Tensor, labels: Tensor) -> Tensor:
                return jitter_images(inputs, shift)

            hooks.input_transform = jitter
        train(config, hooks)

    return run_training(body, "asr-kd mnist-train")


if __name__ == "__main__":
    sys.exit(main())
