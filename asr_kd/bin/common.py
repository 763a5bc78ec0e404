"""Shared CLI plumbing: run a `main` so that bad input ends with one line and exit code 2."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from asr_kd.utils.errors import InputError
from asr_kd.utils.safe_files import TRUST_PICKLE_ENV, trust_pickle


def add_trust_pickle_option(parser: argparse.ArgumentParser) -> None:
    """The --trust-pickle option of every command that reads model files."""
    parser.add_argument("--trust-pickle", action="store_true",
                        help="also read model files in the old pickle formats (final.mdl, checkpoints written "
                             "before the safetensors / weights-only formats), which can run code when loaded: "
                             f"only for files you trust (the same as {TRUST_PICKLE_ENV}=1)")


def run_cli(body: Callable[[], None], prog: str, trust_pickle_files: bool = False) -> int:
    """Call `body` (trusting legacy pickle files if asked); an `InputError` prints `prog: error: message`, returns 2."""
    try:
        with trust_pickle(trust_pickle_files):
            body()
    except InputError as err:
        logging.getLogger(prog).debug("input error", exc_info=True)
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0
