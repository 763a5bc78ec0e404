"""The hybrid acoustic model: a feed-forward classifier from a window of frames to HMM states."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import Tensor, nn

from asr_kd.models.context import as_utterance, utterance_log_posteriors
from asr_kd.utils.dct import dct_matrix
from asr_kd.utils.errors import InputError
from asr_kd.utils.safe_files import is_safetensors, load_safetensors, load_torch_file, save_safetensors

CHECKPOINT_FORMAT = "asr_kd.FrameClassifier"
# 2: models are safetensors files, trainer checkpoints hold only tensors and plain containers.
CHECKPOINT_VERSION = 2

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
_NORMS = ("none", "layernorm", "batchnorm")
# Gain of each activation for the init (torch.nn.init.calculate_gain names); GELU/SiLU behave like ReLU.
_INIT_NONLINEARITY = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "gelu": "relu", "silu": "relu"}


@dataclass(frozen=True)
class FrameClassifierConfig:
    """Shape of a frame classifier: `num_layers` hidden layers of `hidden_dim` over a context window."""

    num_layers: int = 8
    hidden_dim: int = 2560
    left_context: int = 20
    right_context: int = 5
    feat_dim: int = 40
    num_outputs: int = 14000
    activation: Literal["relu", "sigmoid", "tanh", "gelu", "silu"] = "relu"
    dropout: float = 0.0
    norm: Literal["none", "layernorm", "batchnorm"] = "none"
    # Per-dimension normalisation of the input frames (shared across the window's positions).
    input_norm: Literal["none", "layernorm", "batchnorm"] = "none"
    # Cepstral liftering of each input frame: only the first N coefficients of its DCT over the feat_dim
    # bins are kept (a fixed projection, after input_norm): the spectrum's envelope without its fine
    # structure, such as resolved harmonics of the voice's pitch. 0: the frames as they are.
    input_lifter: int = 0

    def __post_init__(self) -> None:
        if self.num_layers < 0 or self.hidden_dim < 1 or self.feat_dim < 1 or self.num_outputs < 1:
            raise InputError(f"FrameClassifierConfig: sizes must be positive, got {self}")
        if self.left_context < 0 or self.right_context < 0:
            raise InputError(f"FrameClassifierConfig: context must be >= 0, got {self.left_context}/{self.right_context}")
        if self.activation not in _ACTIVATIONS:
            raise InputError(f"FrameClassifierConfig: activation {self.activation!r} not in {sorted(_ACTIVATIONS)}")
        if self.norm not in _NORMS or self.input_norm not in _NORMS:
            raise InputError(f"FrameClassifierConfig: norm/input_norm must be one of {_NORMS}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"FrameClassifierConfig: dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.input_lifter <= self.feat_dim:
            raise InputError(f"FrameClassifierConfig: input_lifter must be in [0, feat_dim={self.feat_dim}], "
                             f"got {self.input_lifter}")

    @property
    def context(self) -> int:
        """Frames per input window: left + 1 + right."""
        return self.left_context + 1 + self.right_context

    @property
    def input_dim(self) -> int:
        """Length of a flattened input window."""
        return self.context * self.feat_dim

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FrameClassifierConfig":
        """Config from a dict such as the one stored in a checkpoint (unknown keys rejected)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise InputError(f"FrameClassifierConfig: unknown fields {sorted(unknown)}")
        return cls(**d)


def lifter_projection(feat_dim: int, keep: int) -> Tensor:
    """(feat_dim, feat_dim) float32 matrix P: a frame row-vector x times P keeps the first `keep` DCT-II coefficients.

    P = C_k^T C_k with C_k the first `keep` rows of the orthonormal DCT-II: symmetric, idempotent, rank `keep`.
    """
    basis = dct_matrix(feat_dim)[:keep]
    return torch.from_numpy(basis.T @ basis).float()


def _norm_layer(kind: str, dim: int) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(dim)
    if kind == "batchnorm":
        return nn.BatchNorm1d(dim)
    return nn.Identity()


class FrameClassifier(nn.Module):
    """Feed-forward DNN over a spliced window of frames; outputs logits over HMM states (pdf-ids)."""

    def __init__(self, config: FrameClassifierConfig):
        super().__init__()
        self.config = config
        self.input_norm = _norm_layer(config.input_norm, config.feat_dim)
        if config.input_lifter:
            # Made from the config, so not stored: files of models without it are unchanged.
            self.register_buffer("lifter", lifter_projection(config.feat_dim, config.input_lifter), persistent=False)
        layers: list[nn.Module] = []
        in_dim = config.input_dim
        for _ in range(config.num_layers):
            layers += [nn.Linear(in_dim, config.hidden_dim), _norm_layer(config.norm, config.hidden_dim),
                       _ACTIVATIONS[config.activation]()]
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            in_dim = config.hidden_dim
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(in_dim, config.num_outputs)
        # log p(state) from the training alignments; hybrid decoding divides posteriors by priors.
        self.register_buffer("log_priors", torch.full((config.num_outputs,), -math.log(config.num_outputs)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming) normal init for the hidden layers, LeCun for the output, zero biases.

        PyTorch's default Linear init (uniform with bound 1/sqrt(fan_in)) scales every layer's
        signal by ~1/sqrt(3) through a ReLU: after 8 layers of 2560 the logits barely depend on
        the input. He init keeps each layer's second moment, so deep stacks start trainable.
        """
        gain = nn.init.calculate_gain(_INIT_NONLINEARITY.get(self.config.activation, "relu"))
        for module in self.hidden:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=gain / math.sqrt(module.in_features))
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.output.weight, std=1.0 / math.sqrt(self.output.in_features))
        nn.init.zeros_(self.output.bias)

    @property
    def left_context(self) -> int:
        return self.config.left_context

    @property
    def right_context(self) -> int:
        return self.config.right_context

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, C) from windows (B, L+1+R, D) or flattened windows (B, (L+1+R)*D)."""
        cfg = self.config
        if x.dim() == 3:
            if x.shape[1:] != (cfg.context, cfg.feat_dim):
                raise ValueError(f"FrameClassifier expects windows of shape (B, {cfg.context}, {cfg.feat_dim}), got {tuple(x.shape)}")
        elif x.dim() == 2:
            if x.shape[1] != cfg.input_dim:
                raise ValueError(f"FrameClassifier expects flattened windows (B, {cfg.input_dim}), got {tuple(x.shape)}")
        else:
            raise ValueError(f"FrameClassifier expects a 2-d or 3-d input, got shape {tuple(x.shape)}")
        weight = self.output.weight
        if cfg.input_norm != "none":
            x = x.reshape(-1, cfg.feat_dim).to(weight.dtype)
            x = self.input_norm(x)
        elif x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            # The frame bank stores fp16; under autocast the first matmul casts it itself.
            x = x.to(weight.dtype)
        if cfg.input_lifter:
            x = x.reshape(-1, cfg.feat_dim).to(weight.dtype) @ self.lifter.to(weight.dtype)
        x = x.reshape(-1, cfg.input_dim)
        return self.output(self.hidden(x))

    def set_priors(self, counts: np.ndarray | Tensor) -> None:
        """Set `log_priors` from per-class frame counts (add-one smoothed so no class has p=0)."""
        counts = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
        if counts.shape != (self.config.num_outputs,):
            raise InputError(f"priors: expected {self.config.num_outputs} class counts, got shape {tuple(counts.shape)}")
        probs = (counts + 1.0) / (counts.sum() + counts.numel())
        self.log_priors.copy_(probs.log().to(self.log_priors.dtype))

    @torch.no_grad()
    def log_posteriors(self, feats: np.ndarray | Tensor, temperature: float = 1.0, batch_size: int = 8192) -> Tensor:
        """log p(state | window) (T, C) for one utterance `feats` (T, D) or (1, T, D); edges repeat."""
        x = as_utterance(feats, self.config.feat_dim)
        was_training = self.training
        self.eval()
        try:
            x = x.to(self.output.weight.device, self.output.weight.dtype)
            return utterance_log_posteriors(self, x, self.config.left_context, self.config.right_context,
                                            self.config.num_outputs, temperature, batch_size)
        finally:
            self.train(was_training)

    def posteriors(self, feats: np.ndarray | Tensor, temperature: float = 1.0) -> Tensor:
        """p(state | window) (T, C) for one utterance `feats` (T, D) or (1, T, D)."""
        return self.log_posteriors(feats, temperature).exp()

    def checkpoint_dict(self) -> dict[str, Any]:
        """The model part of a training checkpoint: format tag, config, weights (priors included)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": asdict(self.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }

    def save(self, path: str | os.PathLike, **extra: Any) -> None:
        """Write a safetensors file atomically: weights and priors, with config and `extra` (JSON) as metadata."""
        meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": asdict(self.config), **extra}
        save_safetensors(path, self.state_dict(), meta)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu",
             config: FrameClassifierConfig | None = None) -> "FrameClassifier":
        """Model from a checkpoint; with `config`, fail if the checkpoint was made for another one."""
        ckpt = read_checkpoint(path)
        stored = FrameClassifierConfig.from_dict(ckpt["config"])
        if config is not None:
            check_same_config(path, config, stored)
        model = cls(stored)
        model.load_state_dict(ckpt["state_dict"])
        return model.to(map_location)

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a checkpoint's weights into this model; InputError if its config differs."""
        ckpt = read_checkpoint(path)
        check_same_config(path, self.config, FrameClassifierConfig.from_dict(ckpt["config"]))
        self.load_state_dict(ckpt["state_dict"])


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The dict of a FrameClassifier file: a safetensors model or a (weights-only) trainer checkpoint.

    Both give "format", "config" and "state_dict", plus the extra entries saved with the model or
    the checkpoint's "train_state". Torch files are read with weights_only=True (see
    `asr_kd.utils.safe_files.load_torch_file`); anything else is an InputError naming `path`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model checkpoint")
    if is_safetensors(path):
        state_dict, meta = load_safetensors(path)
        ckpt: Any = {**meta, "state_dict": state_dict}
    else:
        ckpt = load_torch_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a FrameClassifier checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
    return ckpt


def check_same_config(path: str | os.PathLike, expected: FrameClassifierConfig, stored: FrameClassifierConfig) -> None:
    """InputError naming `path` and every field where `stored` differs from `expected`."""
    diffs = [f"{f.name}: checkpoint {getattr(stored, f.name)!r} != model {getattr(expected, f.name)!r}"
             for f in dataclasses.fields(FrameClassifierConfig)
             if getattr(stored, f.name) != getattr(expected, f.name)]
    if diffs:
        raise InputError(f"{path}: checkpoint was made for another model config ({'; '.join(diffs)})")
