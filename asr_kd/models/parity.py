"""Runtime parity of exported FrameClassifiers: their log-posteriors against PyTorch's on real utterances.

An export is only deployable if the runtime computes the network the checkpoint holds. The check
runs PyTorch (the checkpoint) and each exported file (ONNX through onnxruntime, TorchScript) over
the same utterances of a frame bank, with the decoder's own splicing (edge frames repeated), and
takes the largest absolute difference of log-posteriors over every frame and class.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from asr_kd.models.context import utterance_log_posteriors
from asr_kd.models.export import OnnxFrameClassifier, load_torchscript
from asr_kd.models.frame_classifier import FrameClassifier, FrameClassifierConfig
from asr_kd.utils.errors import InputError

__all__ = ["DEFAULT_TOLERANCE", "ParityReport", "exported_log_posteriors", "check_parity", "runtime_of"]

# fp32 with another kernel's summation order moves a logit by ~1e-6 relative, so a log-posterior
# (|value| < ~50) by ~1e-5: 1e-3 is 100x that. Any real defect (a changed weight, a missing or
# reordered layer, a wrong norm) moves log-posteriors by far more (tests/test_deploy.py perturbs
# one weight matrix by 1e-2 and sees ~1e-1).
DEFAULT_TOLERANCE = 1e-3


@dataclass
class ParityReport:
    """One exported file's largest |log p_runtime - log p_pytorch| over `frames` real frames."""

    runtime: str
    path: str
    utterances: int
    frames: int
    max_abs_diff: float
    tolerance: float

    @property
    def passed(self) -> bool:
        """True when the largest difference is within the tolerance (and finite)."""
        return bool(np.isfinite(self.max_abs_diff) and self.max_abs_diff <= self.tolerance)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus `passed`."""
        return asdict(self) | {"passed": self.passed}


def runtime_of(path: str | os.PathLike) -> str:
    """'onnx' for a .onnx file, else 'torchscript'."""
    return "onnx" if Path(path).suffix == ".onnx" else "torchscript"


def exported_log_posteriors(path: str | os.PathLike, num_threads: int | None = None
                            ) -> tuple[Callable[[Tensor], Tensor], FrameClassifierConfig]:
    """A function (T, D) features -> (T, C) log-posteriors running an exported file, and its config."""
    if runtime_of(path) == "onnx":
        model = OnnxFrameClassifier(path, num_threads=num_threads)
        return model.log_posteriors, model.config
    module, config = load_torchscript(path)

    @torch.no_grad()
    def log_posteriors(feats: Tensor) -> Tensor:
        return utterance_log_posteriors(module, feats, config.left_context, config.right_context,
                                        config.num_outputs, 1.0, 8192)

    return log_posteriors, config


@torch.no_grad()
def check_parity(model: FrameClassifier, exported: Sequence[str | os.PathLike], frame_bank: Any,
                 num_utterances: int = 20, tolerance: float = DEFAULT_TOLERANCE) -> list[ParityReport]:
    """Compare each exported file's log-posteriors with `model`'s on `num_utterances` of `frame_bank`.

    The utterances are spread evenly over the bank (first and last included). Returns one report
    per file; the caller decides what a failure means (the CLI exits non-zero).
    """
    if num_utterances < 1:
        raise InputError(f"parity check needs >= 1 utterance, got {num_utterances}")
    if tolerance <= 0:
        raise InputError(f"parity tolerance must be > 0, got {tolerance}")
    model = model.to("cpu", torch.float32).eval()
    cfg = model.config
    if frame_bank.feat_dim != cfg.feat_dim:
        raise InputError(f"{frame_bank.directory}: {frame_bank.feat_dim}-dim features, the model takes {cfg.feat_dim}")
    picks = np.unique(np.linspace(0, frame_bank.num_utterances - 1, min(num_utterances, frame_bank.num_utterances))
                      .round().astype(int))
    utterances = [torch.as_tensor(frame_bank.utterance(int(u))[0], dtype=torch.float32) for u in picks]
    reference = [model.log_posteriors(x) for x in utterances]
    reports = []
    for path in exported:
        run, exported_cfg = exported_log_posteriors(path)
        if (exported_cfg.feat_dim, exported_cfg.num_outputs, exported_cfg.left_context, exported_cfg.right_context) != \
                (cfg.feat_dim, cfg.num_outputs, cfg.left_context, cfg.right_context):
            raise InputError(f"{path}: exported config {exported_cfg} does not match the checkpoint's {cfg}")
        worst = 0.0
        for x, ref in zip(utterances, reference):
            diff = (run(x).float() - ref).abs().max().item()
            worst = max(worst, diff) if np.isfinite(diff) else float("inf")
        reports.append(ParityReport(runtime_of(path), str(path), len(utterances), sum(len(x) for x in utterances),
                                    worst, tolerance))
    return reports
