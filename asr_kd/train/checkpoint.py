"""Resumable training checkpoints: a FrameClassifier checkpoint plus everything needed to go on.

A `torch.save` file of tensors and plain containers only, read back with weights_only=True. The
trainer's latest checkpoint keeps its predecessor beside it (checkpoint.pt -> checkpoint.prev.pt):
when the latest cannot be read (a torn write after a power cut, a truncated copy), resuming falls
back to the previous one with a warning naming the damaged file.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_kd.models.frame_classifier import FrameClassifier, read_checkpoint
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path

log = logging.getLogger(__name__)


def rng_states() -> dict[str, Any]:
    """Generator states of python, numpy, torch (and CUDA when in use), as tensors and plain values.

    Plain so that a checkpoint reads back with torch.load(weights_only=True).
    """
    py_version, py_internal, py_gauss = random.getstate()
    np_algorithm, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss_next": py_gauss},
        "numpy": {"algorithm": np_algorithm, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` captured."""
    py, nps = states["python"], states["numpy"]
    # Version-1 checkpoints (read with --trust-pickle) hold the tuples themselves.
    if isinstance(py, dict):
        py = (py["version"], tuple(py["internal"].tolist()), py["gauss_next"])
        nps = (nps["algorithm"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
               nps["cached_gaussian"])
    random.setstate(py)
    np.random.set_state(nps)
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint before `path` is kept: checkpoint.pt -> checkpoint.prev.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: str | os.PathLike, model: FrameClassifier, train_state: dict[str, Any],
                    keep_previous: bool = False) -> None:
    """Write the model (config, weights, priors) and `train_state` atomically: a crash mid-write
    leaves the previous checkpoint intact. Only tensors and plain containers: it reads back weights-only.

    With `keep_previous`, the file being replaced becomes `previous_path(path)`; `path` exists throughout.
    """
    path = Path(path)
    ckpt = model.checkpoint_dict()
    ckpt["train_state"] = train_state
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # on disk before the rename makes it the latest
        if keep_previous and path.is_file():
            with atomic_path(previous_path(path)) as prev_tmp:
                prev_tmp.unlink()
                try:
                    os.link(path, prev_tmp)  # a second name for the same data: no copy
                except OSError:  # a file system without hard links
                    shutil.copyfile(path, prev_tmp)


def load_train_state(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(FrameClassifier checkpoint dict, its train_state) of a trainer checkpoint, read weights-only."""
    ckpt = read_checkpoint(path)
    return ckpt, ckpt.get("train_state") or {}


def load_resumable(path: str | os.PathLike) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """(file read, checkpoint dict, train_state) to resume from; None when `path` does not exist.

    A damaged `path` with a previous checkpoint beside it gives the previous one and a warning
    naming `path`; without one, its InputError.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return (path, *load_train_state(path))
    except InputError as err:
        prev = previous_path(path)
        if not prev.is_file():
            raise
        log.warning("%s is damaged (%s); resuming from the previous checkpoint %s", path, err, prev)
    return (prev, *load_train_state(prev))
