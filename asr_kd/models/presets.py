"""Named model shapes: the paper's acoustic model and small ones that train on a CPU."""

from __future__ import annotations

import dataclasses
from typing import Any

from asr_kd.models.frame_classifier import FrameClassifierConfig
from asr_kd.utils.errors import InputError

# num_outputs is a placeholder: the trainer sets it from the frame bank's number of pdf-ids.
PRESETS: dict[str, FrameClassifierConfig] = {
    # Hinton et al. 2015: 8 x 2560 ReLU, 26 frames (20 left, 5 right) of 40 log-mel, ~14k states.
    "paper": FrameClassifierConfig(num_layers=8, hidden_dim=2560, left_context=20, right_context=5,
                                   feat_dim=40, num_outputs=14000, activation="relu"),
    "tiny": FrameClassifierConfig(num_layers=2, hidden_dim=128, left_context=20, right_context=5,
                                  feat_dim=40, num_outputs=1000, activation="relu"),
    "small": FrameClassifierConfig(num_layers=4, hidden_dim=512, left_context=20, right_context=5,
                                   feat_dim=40, num_outputs=1000, activation="relu"),
    "medium": FrameClassifierConfig(num_layers=6, hidden_dim=1024, left_context=20, right_context=5,
                                    feat_dim=40, num_outputs=2000, activation="relu"),
}


def get_preset(name: str, **overrides: Any) -> FrameClassifierConfig:
    """The preset `name` with some fields replaced (None values are ignored)."""
    if name not in PRESETS:
        raise InputError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
