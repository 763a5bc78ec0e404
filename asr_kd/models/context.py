"""Context splicing on the device: one gather builds every frame's window of neighbours."""

from __future__ import annotations

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
    # One flat index op: the whole minibatch in a single gather kernel.
    return store[pos.reshape(-1)].reshape(frame_idx.shape[0], offsets.numel(), store.shape[1])


def splice_utterance(feats: Tensor, left: int, right: int) -> Tensor:
    """Windows (T, left+1+right, D) for every frame of one utterance `feats` (T, D)."""
    num_frames = feats.shape[0]
    idx = torch.arange(num_frames, device=feats.device)
    start = torch.zeros_like(idx)
    end = torch.full_like(idx, num_frames)
    return gather_context(feats, idx, start, end, left, right)
