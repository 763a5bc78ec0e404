"""Shared CLI plumbing: run a `main` so that bad input ends with one line and exit code 2."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from asr_kd.utils.errors import InputError


def run_cli(body: Callable[[], None], prog: str) -> int:
    """Call `body`; an `InputError` prints `prog: error: message` and returns 2."""
    try:
        body()
    except InputError as err:
        logging.getLogger(prog).debug("input error", exc_info=True)
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0
