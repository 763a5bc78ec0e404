"""Frame accuracy and cross-entropy of a frame classifier against forced alignments."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from asr_kd.data.cmvn import CmvnStats
from asr_kd.data.frame_bank import FrameBank, cuts_features, load_cmvn
from asr_kd.models.context import splice_utterance
from asr_kd.utils.device import autocast
from asr_kd.utils.errors import InputError

LogitsFn = Callable[[Tensor], Tensor]


@dataclass
class FrameAccuracy:
    """Share of frames whose arg-max class is the aligned pdf-id, mean CE (nats), frames scored."""

    accuracy: float
    cross_entropy: float
    num_frames: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _context_of(model: Any, left: int | None, right: int | None) -> tuple[int, int]:
    config = getattr(model, "config", None)
    left = getattr(config, "left_context", None) if left is None else left
    right = getattr(config, "right_context", None) if right is None else right
    if left is None or right is None:
        raise InputError("frame accuracy: give left/right context for a model without a FrameClassifierConfig")
    return int(left), int(right)


@torch.no_grad()
def score_bank_sums(model: LogitsFn, bank: FrameBank, left: int, right: int, frame_idx: Tensor | None = None,
                    batch_size: int = 8192, amp: bool = False) -> Tensor:
    """[correct, summed CE, frames] as a float64 tensor on the bank's device (summable across ranks)."""
    device = bank.device
    if frame_idx is None:
        frame_idx = torch.arange(bank.num_frames, device=device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for i in range(0, frame_idx.numel(), batch_size):
        idx = frame_idx[i:i + batch_size]
        labels = bank.batch_labels(idx)
        with autocast(device, amp):
            logits = model(bank.splice(idx, left, right))
        logits = logits.float()
        sums[0] += (logits.argmax(-1) == labels).sum()
        sums[1] += F.cross_entropy(logits, labels, reduction="sum").double()
        sums[2] += idx.numel()
    return sums


def _result(sums: Tensor | np.ndarray) -> FrameAccuracy:
    correct, ce, frames = (float(v) for v in sums)
    if frames == 0:
        raise InputError("frame accuracy: no frames to score")
    return FrameAccuracy(accuracy=correct / frames, cross_entropy=ce / frames, num_frames=int(frames))


def frame_accuracy_bank(model: LogitsFn, bank: FrameBank, left: int | None = None, right: int | None = None,
                        batch_size: int = 8192, amp: bool = False, frame_idx: np.ndarray | None = None) -> FrameAccuracy:
    """Score every frame of a frame bank, or the frames `frame_idx`."""
    left, right = _context_of(model, left, right)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        idx = None if frame_idx is None else torch.as_tensor(frame_idx, dtype=torch.long, device=bank.device)
        return _result(score_bank_sums(model, bank, left, right, idx, batch_size=batch_size, amp=amp).cpu())
    finally:
        if was_training:
            model.train()


@torch.no_grad()
def frame_accuracy_cuts(model: LogitsFn, cuts: Iterable[Any], cmvn: CmvnStats | str | os.PathLike | None = None,
                        left: int | None = None, right: int | None = None, label_field: str = "pdf_ids",
                        device: str | torch.device = "cpu", batch_size: int = 8192) -> FrameAccuracy:
    """Score aligned lhotse cuts (features + `label_field`), one utterance at a time."""
    left, right = _context_of(model, left, right)
    normalizer = load_cmvn(cmvn)
    device = torch.device(device)
    if hasattr(model, "eval"):
        model.eval()
    sums = np.zeros(3, dtype=np.float64)
    cuts = list(cuts)
    for cut in cuts:
        if not cut.has_custom(label_field):
            raise InputError(f"cut {cut.id}: has no {label_field!r} alignment")
    for cut, feats in tqdm(cuts_features(cuts, normalizer), total=len(cuts), desc="frame accuracy", unit="utt"):
        labels = np.asarray(cut.load_custom(label_field))
        if labels.shape != (feats.shape[0],):
            raise InputError(f"cut {cut.id}: alignment has {labels.shape[0]} frames but the features have {feats.shape[0]}")
        if labels.size == 0:
            continue
        x = splice_utterance(torch.as_tensor(feats, dtype=torch.float32, device=device), left, right)
        y = torch.as_tensor(labels, dtype=torch.long, device=device)
        for i in range(0, x.shape[0], batch_size):
            logits = model(x[i:i + batch_size]).float()
            if logits.shape[1] <= int(y.max()):
                raise InputError(f"cut {cut.id}: label {int(y.max())} beyond the model's {logits.shape[1]} outputs")
            yy = y[i:i + batch_size]
            sums += [float((logits.argmax(-1) == yy).sum()), float(F.cross_entropy(logits, yy, reduction="sum")), yy.numel()]
    return _result(sums)

