"""Model shapes: hidden layers x width of a frame classifier, by name (the paper's, small ones that train on a
CPU) or written "LxW" (e.g. 3x512)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from asr_kd.models.frame_classifier import FrameClassifierConfig
from asr_kd.utils.errors import InputError

# num_outputs is a placeholder: the trainer sets it from the frame bank's number of pdf-ids.
MODEL_SHAPES: dict[str, FrameClassifierConfig] = {
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
_LXW = re.compile(r"([1-9][0-9]*)x([1-9][0-9]*)")


@dataclass(frozen=True, order=True)
class NetShape:
    """Hidden layers x width of a frame classifier (context and outputs come from elsewhere)."""

    num_layers: int
    hidden_dim: int

    def __str__(self) -> str:
        return f"{self.num_layers}x{self.hidden_dim}"


def parse_shape(text: str) -> NetShape:
    """"2x96" -> NetShape(2, 96); InputError for anything else."""
    match = _LXW.fullmatch(text.strip())
    if match is None:
        raise InputError(f"bad network shape {text!r}: expected LAYERSxWIDTH with positive integers, e.g. 2x96")
    return NetShape(int(match.group(1)), int(match.group(2)))


def shape_config(shape: str, **overrides: Any) -> FrameClassifierConfig:
    """The config of a model shape (a name of MODEL_SHAPES, or "LxW": the named shapes' 26-frame window of
    40-dim features and ReLU) with some fields replaced (None values are ignored)."""
    if shape in MODEL_SHAPES:
        base = MODEL_SHAPES[shape]
    elif _LXW.fullmatch(shape.strip()):
        net = parse_shape(shape)
        base = dataclasses.replace(MODEL_SHAPES["tiny"], num_layers=net.num_layers, hidden_dim=net.hidden_dim)
    else:
        raise InputError(f"unknown model shape {shape!r}; give LAYERSxWIDTH (e.g. 3x512) or one of "
                         f"{sorted(MODEL_SHAPES)}")
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
