"""Shared CLI plumbing: run a `main` so that bad input ends with one line and exit code 2; options <-> configs."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Any, Callable, TypeVar

from asr_kd.utils.errors import InputError
from asr_kd.utils.safe_files import TRUST_PICKLE_ENV, trust_pickle

Config = TypeVar("Config")


def add_trust_pickle_option(parser: argparse.ArgumentParser) -> None:
    """The --trust-pickle option of every command that reads model files."""
    parser.add_argument("--trust-pickle", action="store_true",
                        help="also read model files in the old pickle formats (final.mdl, checkpoints written "
                             "before the safetensors / weights-only formats), which can run code when loaded: "
                             f"only for files you trust (the same as {TRUST_PICKLE_ENV}=1)")


def run_cli(body: Callable[[], object], prog: str, trust_pickle_files: bool = False) -> int:
    """Call `body` (trusting legacy pickle files if asked); an `InputError` prints `prog: error: message`, returns 2."""
    try:
        with trust_pickle(trust_pickle_files):
            body()
    except InputError as err:
        logging.getLogger(prog).debug("input error", exc_info=True)
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0


def config_defaults(config_type: type) -> dict[str, Any]:
    """The field defaults of the dataclass `config_type`, for `parser.set_defaults`: one source of defaults."""
    defaults = {}
    for f in dataclasses.fields(config_type):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


def config_from_args(config_type: type[Config], args: argparse.Namespace) -> Config:
    """The dataclass `config_type` from the parsed options named like its fields (the others keep their defaults)."""
    given = vars(args)
    return config_type(**{f.name: given[f.name] for f in dataclasses.fields(config_type) if f.name in given})
