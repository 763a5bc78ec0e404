"""Shared CLI plumbing: run a `main` so that bad input ends with one line and exit code 2; --device names."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Callable

from asr_kd.utils.errors import InputError

if TYPE_CHECKING:
    import torch


def run_cli(body: Callable[[], None], prog: str) -> int:
    """Call `body`; an `InputError` prints `prog: error: message` and returns 2."""
    try:
        body()
    except InputError as err:
        logging.getLogger(prog).debug("input error", exc_info=True)
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0


def resolve_device(name: str) -> "torch.device":
    """A --device value: "auto" is cuda when available, else cpu; any other name as given."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)
