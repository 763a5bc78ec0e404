"""Resumable training checkpoints: a FrameClassifier checkpoint plus everything needed to go on.

A `torch.save` file of tensors and plain containers only, read back with weights_only=True.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from asr_kd.models.frame_classifier import FrameClassifier, read_checkpoint
from asr_kd.utils.io import atomic_path


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


def save_checkpoint(path: str | os.PathLike, model: FrameClassifier, train_state: dict[str, Any]) -> None:
    """Write the model (config, weights, priors) and `train_state` atomically: a crash mid-write
    leaves the previous checkpoint intact. Only tensors and plain containers: it reads back weights-only."""
    ckpt = model.checkpoint_dict()
    ckpt["train_state"] = train_state
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_train_state(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(FrameClassifier checkpoint dict, its train_state) of a trainer checkpoint, read weights-only."""
    ckpt = read_checkpoint(path)
    return ckpt, ckpt.get("train_state") or {}

