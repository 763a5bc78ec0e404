"""`asr-kd train`: train a frame classifier on a frame bank (see asr_kd.train.train)."""

from __future__ import annotations

import sys
from typing import Sequence

from asr_kd.train.train import main as train_main


def main(argv: Sequence[str] | None = None) -> int:
    """Train a frame classifier; options: `asr-kd train --help`."""
    return train_main(argv)


if __name__ == "__main__":
    sys.exit(main())
