"""Context splicing on the device: one gather builds every frame's window of neighbours."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor


def context_offsets(left: int, right: int, device: torch.device | str | None = None) -> Tensor:
    """Offsets -left..right of a frame's neighbours, shape (left + 1 + right,)."""
    return torch.arange(-left, right + 1, device=device, dtype=torch.long)


def gather_context(store: Tensor, frame_idx: Tensor, utt_start: Tensor, utt_end: Tensor,
                   left: int, right: int) -> Tensor:
    """Windows (B, left+1+right, D) of rows of `store` (N, D) around `frame_idx` (B,).

    Neighbour indices are clamped to each frame's utterance [utt_start, utt_end) (both (B,)), so
    windows never cross an utterance boundary and the first/last frame repeats at the edges.
    """
    offsets = context_offsets(left, right, frame_idx.device)
    pos = frame_idx.long()[:, None] + offsets
    pos = torch.maximum(pos, utt_start.long()[:, None])
    pos = torch.minimum(pos, utt_end.long()[:, None] - 1)
    # One flat gather for the whole minibatch (index_select: ~4x faster than advanced indexing on the CPU).
    return store.index_select(0, pos.reshape(-1)).reshape(frame_idx.shape[0], offsets.numel(), store.shape[1])


def splice_utterance(feats: Tensor, left: int, right: int) -> Tensor:
    """Windows (T, left+1+right, D) for every frame of one utterance `feats` (T, D)."""
    num_frames = feats.shape[0]
    idx = torch.arange(num_frames, device=feats.device)
    start = torch.zeros_like(idx)
    end = torch.full_like(idx, num_frames)
    return gather_context(feats, idx, start, end, left, right)


def as_utterance(feats: np.ndarray | Tensor, feat_dim: int) -> Tensor:
    """One utterance's features as a (T, D) tensor; accepts (T, D) or (1, T, D)."""
    x = torch.as_tensor(np.asarray(feats) if not isinstance(feats, Tensor) else feats)
    if x.dim() == 3:
        if x.shape[0] != 1:
            raise ValueError(f"posteriors: one utterance at a time, got batch of {x.shape[0]}")
        x = x[0]
    if x.dim() != 2 or x.shape[1] != feat_dim:
        raise ValueError(f"posteriors: expected (T, {feat_dim}) features, got {tuple(x.shape)}")
    return x


def utterance_log_posteriors(logits_of: Callable[[Tensor], Tensor], feats: Tensor, left: int, right: int,
                             num_outputs: int, temperature: float, batch_size: int) -> Tensor:
    """log softmax(logits / T) (T, C) of every frame of one utterance (T, D), in batches of windows."""
    windows = splice_utterance(feats, left, right)
    out = [torch.log_softmax(logits_of(windows[i:i + batch_size]).float() / temperature, dim=-1)
           for i in range(0, windows.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0, num_outputs, device=feats.device)
