"""Resumable training checkpoints: a FrameClassifier checkpoint plus everything needed to go on."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from asr_kd.models.frame_classifier import FrameClassifier, read_checkpoint
from asr_kd.utils.io import atomic_path


def rng_states() -> dict[str, Any]:
    """Generator states of python, numpy, torch (and CUDA when in use)."""
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` captured."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str | os.PathLike, model: FrameClassifier, train_state: dict[str, Any]) -> None:
    """Write the model (config, weights, priors) and `train_state` atomically: a crash mid-write
    leaves the previous checkpoint intact."""
    ckpt = model.checkpoint_dict()
    ckpt["train_state"] = train_state
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_train_state(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(FrameClassifier checkpoint dict, its train_state) of a trainer checkpoint."""
    ckpt = read_checkpoint(path)
    return ckpt, ckpt.get("train_state") or {}

