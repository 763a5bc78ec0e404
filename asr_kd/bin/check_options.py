"""`asr-kd check-options`: check a recipe's network options before its first stage, by the parsers that take them.

recipes/run.sh and egs/synth/run_augment.sh call it at start-up, so that a malformed model shape, window
augmentation, list of perturbed copies or mix of shares is refused at once, not when the stage that uses it
is reached, hours of corpus, GMM and copies later. Each value is checked only when not empty; --augment,
--train-copies and --mix-shares may be given more than once (the recipe's full-data networks and its 3% students
each have their augmentation and copies; its members and its student each their shares).

Example:
  asr-kd check-options --model-shape 3x1024 --input-lifter 13 --augment freq_mask=8 \\
      --train-copies revoice,revoice2 --mix-shares original=0.125
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from asr_kd.bin.common import run_cli
from asr_kd.utils.errors import InputError


def get_parser() -> argparse.ArgumentParser:
    """Command-line options of `asr-kd check-options`."""
    p = argparse.ArgumentParser(prog="asr-kd check-options", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-shape", default="", help="a shape as `asr-kd train --model-shape` takes it")
    p.add_argument("--input-lifter", default="",
                   help="cepstral coefficients kept, as `asr-kd train --input-lifter` takes it (with --model-shape)")
    p.add_argument("--augment", action="append", default=[],
                   help="a window augmentation as `asr-kd train --augment` takes it")
    p.add_argument("--train-copies", action="append", default=[],
                   help="comma-separated perturbations as `asr-kd augment-data --perturbations` takes them")
    p.add_argument("--mix-shares", action="append", default=[],
                   help="shares by group as `asr-kd train --mix-shares` takes them")
    return p


def checks(args: argparse.Namespace) -> list[tuple[str, str, Callable[[str], object]]]:
    """(option, value, parser) for every option given; a parser raises `InputError` on a malformed value."""
    from asr_kd.data.augment import parse_perturbations
    from asr_kd.models.shapes import shape_config
    from asr_kd.train.augment import parse_augment
    from asr_kd.train.sampler import parse_mix_shares

    def lifter(value: str) -> object:
        if not value.isdigit():
            raise InputError(f"give a whole number of cepstral coefficients, got {value!r}")
        return shape_config(args.model_shape or "tiny", input_lifter=int(value))

    given = [("--model-shape", args.model_shape, shape_config),
             ("--input-lifter", args.input_lifter, lifter),
             *(("--augment", spec, parse_augment) for spec in args.augment),
             *(("--train-copies", names, lambda v: parse_perturbations(v.split(","))) for names in args.train_copies),
             *(("--mix-shares", shares, parse_mix_shares) for shares in args.mix_shares)]
    return [(option, value, parse) for option, value, parse in given if value]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse every option given; the first malformed one ends with exit code 2 and a line naming it."""
    args = get_parser().parse_args(argv)

    def body() -> None:
        for option, value, parse in checks(args):
            try:
                parse(value)
            except InputError as err:
                # parse_augment's and parse_mix_shares' messages name their option already.
                raise InputError(str(err) if str(err).startswith(option) else f"{option}: {err}") from err

    return run_cli(body, "asr-kd check-options")


if __name__ == "__main__":
    sys.exit(main())
