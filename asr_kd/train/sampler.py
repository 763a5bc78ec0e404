"""Which training frames each epoch visits: a seeded walk over all of them, or fixed shares by group.

`epoch_order` walks the training frames pass after pass, `frames_per_epoch` at a time. `MixedEpochs`
gives the groups of an augmented frame bank fixed shares of each epoch (lhotse's `CutSet.mux`, for
frames): an augmented bank holds the original training utterances and perturbed copies of them, a
copy's cut id being its source's id + `_<perturbation>` (asr_kd.data.augment). Drawn uniformly, the originals'
share of an epoch falls as copies are added (about 1/6 with six re-voiced copies); `--mix-shares
original=0.5` keeps half of every epoch on them. Groups are `original` and each perturbation name;
named groups get their share, the rest of the epoch is drawn uniformly from the frames of the
groups not named (none when the named shares add up to 1). Each group is walked without repeats
before its frames come back, and an epoch's frames are a function of (seed, epoch) alone, so a
resumed run draws what it would have.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from asr_kd.utils.errors import InputError

__all__ = ["ORIGINAL", "MixedEpochs", "epoch_order", "epoch_permutation", "parse_mix_shares",
           "utterance_groups"]

ORIGINAL = "original"


def epoch_permutation(num: int, seed: int, epoch: int) -> Tensor:
    """The shuffle of pass `epoch` over `num` frames: a function of (seed, epoch) only, so resuming needs no sampler RNG."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num, generator=gen)


def epoch_order(num: int, seed: int, epoch: int, frames_per_epoch: int) -> Tensor:
    """Positions (into the training frames) that epoch `epoch` visits, `frames_per_epoch` of them.

    The epochs walk one stream made of passes 1, 2, ... (`epoch_permutation` each): with
    frames_per_epoch == num, epoch e is pass e; with fewer, a large transfer set is covered over
    several epochs without repeats before any frame comes back.
    """
    start = (epoch - 1) * frames_per_epoch
    parts, pos = [], start
    while pos < start + frames_per_epoch:
        pass_index, offset = divmod(pos, num)
        take = min(num - offset, start + frames_per_epoch - pos)
        parts.append(epoch_permutation(num, seed, pass_index + 1)[offset:offset + take])
        pos += take
    return torch.cat(parts)


def parse_mix_shares(spec: str) -> dict[str, float]:
    """'original=0.5,noise=0.1' -> {'original': 0.5, 'noise': 0.1}; shares in (0, 1], summing to at most 1."""
    shares: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, value = item.partition("=")
        try:
            share = float(value)
        except ValueError:
            share = float("nan")
        if not sep or not name or not 0 < share <= 1 or name in shares:
            raise InputError(f"--mix-shares {spec!r}: {item!r} is not GROUP=SHARE with 0 < SHARE <= 1 "
                             "(each group once)")
        shares[name] = share
    if not shares:
        raise InputError(f"--mix-shares {spec!r}: no GROUP=SHARE")
    if sum(shares.values()) > 1 + 1e-9:
        raise InputError(f"--mix-shares {spec!r}: the shares add up to {sum(shares.values()):g}, more than 1")
    return shares


def utterance_groups(cut_ids: Sequence[str]) -> list[str]:
    """Each utterance's group: the perturbation of a copy (`<source id>_<name>` with its source in the
    same bank), else `original`."""
    ids = set(cut_ids)
    groups = []
    for cut_id in cut_ids:
        source, sep, name = cut_id.rpartition("_")
        groups.append(name if sep and source in ids else ORIGINAL)
    return groups


class MixedEpochs:
    """The positions (into the training frames) each epoch visits, with fixed shares per group."""

    def __init__(self, frame_groups: Sequence[str] | np.ndarray, shares: dict[str, float], frames_per_epoch: int,
                 seed: int, source: str = "the training bank"):
        """`frame_groups`: the group of each training frame; `source` names the bank in errors."""
        frame_groups = np.asarray(frame_groups)
        present = sorted(set(frame_groups.tolist()))
        missing = [g for g in shares if g not in present]
        if missing:
            raise InputError(f"{source}: --mix-shares names {', '.join(missing)}, but its frames are in the groups "
                             f"{', '.join(present)}")
        rest = [g for g in present if g not in shares]
        left = 1.0 - sum(shares.values())
        if not rest and left > 1e-9:
            raise InputError(f"{source}: --mix-shares adds up to {1 - left:g} and every group is named; the shares "
                             "of the groups must add up to 1")
        left = max(left, 0.0)
        names = list(shares) + ([f"the rest ({', '.join(rest)})"] if rest else [])
        members = [frame_groups == g for g in shares] + ([np.isin(frame_groups, rest)] if rest else [])
        wanted = [shares[g] * frames_per_epoch for g in shares] + ([left * frames_per_epoch] if rest else [])
        counts = np.floor(wanted).astype(np.int64)
        # Largest remainders get the frames rounding left over, so every epoch has frames_per_epoch.
        for i in np.argsort([c - w for c, w in zip(counts, wanted)])[:frames_per_epoch - int(counts.sum())]:
            counts[i] += 1
        self.groups = names
        self.counts = [int(c) for c in counts]
        self.positions = [torch.from_numpy(np.flatnonzero(m)) for m in members]
        self.seed = seed

    def __call__(self, epoch: int) -> Tensor:
        """Positions of epoch `epoch`: each group's share from its own stream, shuffled together."""
        parts = [pos[epoch_order(len(pos), self.seed + 7919 * (i + 1), epoch, n)]
                 for i, (pos, n) in enumerate(zip(self.positions, self.counts)) if n > 0]
        joined = torch.cat(parts)
        return joined[epoch_permutation(len(joined), self.seed, epoch)]

    def class_counts(self, count: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Labelled frames per class that one epoch draws on average; `count(positions)` gives those of the
        training frames at `positions` (FrameBank.class_counts).

        Each group's class counts scaled to its frames per epoch: the class distribution the network is
        trained on, hence its priors (a bank's own counts would weigh each group by its size instead).
        """
        return sum(count(pos.numpy()) * (n / len(pos)) for pos, n in zip(self.positions, self.counts))

    def describe(self) -> str:
        """One log line: each group's frames per epoch out of its size."""
        return ", ".join(f"{g} {n} of {len(p)}" for g, n, p in zip(self.groups, self.counts, self.positions))
