"""The options of the commands that run networks forward (decode-nnet, frame-accuracy): --amp, --specialists."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from asr_kd.decode.scorer import HybridScorer, load_scorer
from asr_kd.utils.device import AMP_CHOICES


def add_amp_option(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """--amp for a CLI that runs networks forward (frame accuracy, decoding)."""
    parser.add_argument("--amp", choices=AMP_CHOICES, default=default,
                        help="bf16 autocast of the networks (auto: where the GPU or CPU has bf16 units)")


def add_specialist_options(parser: argparse.ArgumentParser) -> None:
    """Options that turn a one-model scorer into generalist + specialists (Hinton et al. 2015, Section 5)."""
    g = parser.add_argument_group("specialists (Hinton et al. 2015, Section 5)")
    g.add_argument("--specialists", type=Path, nargs="+",
                   help="specialist checkpoints (`asr-kd train-specialists`) of the one --model (the generalist): "
                        "posteriors become the KL combination of generalist and active specialists")
    g.add_argument("--specialist-top-n", type=int, default=1, help="generalist classes that pick active specialists")
    g.add_argument("--combine-steps", type=int, default=20, help="EM iterations of the KL combination")


def make_scorer(args: argparse.Namespace, device: torch.device) -> HybridScorer:
    """The scorer of --model (with --specialists attached when given) from a CLI's parsed options."""
    return load_scorer(args.model, device, args.batch_size, getattr(args, "num_threads", None), args.amp,
                       args.specialists, args.specialist_top_n, args.combine_steps)
