"""Specialist class sets (Hinton et al. 2015, Section 5): classes the generalist confuses, by K-means.

The generalist's posterior vectors over a sample of training frames give a C x C covariance; classes
whose predicted probabilities rise and fall together are the ones it confuses. K-means on the
covariance's columns groups them; each group (or, with `set_size`, the `set_size` classes nearest to
each centroid, so that sets overlap as in the paper's JFT experiment) becomes one specialist's set S.
A specialist predicts S plus one "dustbin" class standing for everything outside S.

Sets file (JSON): {"format": "asr_kd.SpecialistSets", "num_classes": C, "sets": [[ids...], ...], ...}.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)

SETS_FORMAT = "asr_kd.SpecialistSets"


@dataclass
class SpecialistSets:
    """Class sets of the specialists over `num_classes` generalist classes (sorted int64 ids each)."""

    num_classes: int
    sets: list[np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sets = [np.asarray(s, dtype=np.int64) for s in self.sets]
        validate_sets(self.sets, self.num_classes, "specialist sets")
        self.sets = [np.sort(s) for s in self.sets]

    def __len__(self) -> int:
        return len(self.sets)

    def coverage(self) -> np.ndarray:
        """How many sets hold each class (C,)."""
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for s in self.sets:
            counts[s] += 1
        return counts

    def save(self, path: str | os.PathLike) -> None:
        """Write the sets as JSON (atomically)."""
        atomic_write_json(Path(path), {"format": SETS_FORMAT, "num_classes": self.num_classes,
                                       "sets": [s.tolist() for s in self.sets], "info": self.info})

    @classmethod
    def load(cls, path: str | os.PathLike, num_classes: int | None = None) -> "SpecialistSets":
        """Read a sets file; InputError naming the file when it is malformed or made for other classes."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such specialist sets file")
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != SETS_FORMAT:
            raise InputError(f"{path}: not a specialist sets file (no format tag {SETS_FORMAT!r})")
        if num_classes is not None and data["num_classes"] != num_classes:
            raise InputError(f"{path}: sets over {data['num_classes']} classes, the generalist has {num_classes}")
        try:
            return cls(int(data["num_classes"]), [np.asarray(s, dtype=np.int64) for s in data["sets"]],
                       data.get("info", {}))
        except InputError as err:
            raise InputError(f"{path}: {err}") from err


def validate_sets(sets: Sequence[np.ndarray], num_classes: int, what: str) -> None:
    """InputError unless every set is a non-empty, duplicate-free proper subset of range(num_classes)."""
    for m, s in enumerate(sets):
        if s.ndim != 1 or s.size == 0:
            raise InputError(f"{what}: set {m} is empty or not a flat list of class ids")
        if s.min() < 0 or s.max() >= num_classes:
            bad = int(s.min()) if s.min() < 0 else int(s.max())
            raise InputError(f"{what}: set {m} names class {bad}, outside [0, {num_classes})")
        if np.unique(s).size != s.size:
            raise InputError(f"{what}: set {m} names a class twice")
        if s.size >= num_classes:
            raise InputError(f"{what}: set {m} holds all {num_classes} classes; a specialist needs a dustbin")


def collapse_map(classes: np.ndarray | Tensor, num_classes: int, device: torch.device | str | None = None) -> Tensor:
    """(C,) long: position of each class in `classes`, or len(classes) (the dustbin) when outside it."""
    classes = torch.as_tensor(np.asarray(classes), dtype=torch.long)
    out = torch.full((num_classes,), classes.numel(), dtype=torch.long)
    out[classes] = torch.arange(classes.numel())
    return out.to(device) if device is not None else out


def collapse(probs: Tensor, class_map: Tensor) -> Tensor:
    """Distributions (B, C) summed onto a specialist's classes + dustbin (B, |S|+1) via `collapse_map`."""
    num_out = int(class_map.max()) + 1
    out = torch.zeros(probs.shape[0], num_out, dtype=probs.dtype, device=probs.device)
    return out.index_add_(1, class_map.to(probs.device), probs)


@torch.no_grad()
def prediction_covariance(log_posteriors_of: Callable[[Tensor], Tensor], windows_of: Callable[[Tensor], Tensor],
                          frame_idx: Tensor, batch_size: int = 8192) -> Tensor:
    """C x C covariance (float64) of the generalist's posterior vectors over the frames `frame_idx`."""
    total = second = None
    for i in tqdm(range(0, frame_idx.numel(), batch_size), desc="prediction covariance", unit="batch",
                  mininterval=2.0, leave=False):
        p = log_posteriors_of(windows_of(frame_idx[i:i + batch_size])).float().exp()
        s, pp = p.sum(0).double(), (p.T @ p).double()
        total, second = (s, pp) if total is None else (total + s, second + pp)
    if total is None:
        raise InputError("prediction covariance: no frames")
    n = float(frame_idx.numel())
    mean = total / n
    return second / n - torch.outer(mean, mean)


def kmeans(points: Tensor, k: int, seed: int = 0, max_iters: int = 100) -> tuple[Tensor, Tensor, Tensor]:
    """Lloyd's K-means with k-means++ seeding: centroids (k, D), assignment (N,), squared distances (N, k)."""
    n = points.shape[0]
    if not 1 <= k <= n:
        raise InputError(f"K-means: need 1 <= k <= {n} points, got k={k}")
    x = points.double()
    gen = torch.Generator().manual_seed(seed)
    centroids = torch.empty(k, x.shape[1], dtype=x.dtype)
    centroids[0] = x[torch.randint(n, (1,), generator=gen)]
    nearest = ((x - centroids[0]) ** 2).sum(1)
    for j in range(1, k):
        # k-means++: the next centre is drawn with probability proportional to the squared distance.
        weights = nearest.clamp_min(0)
        pick = torch.multinomial(weights, 1, generator=gen) if weights.sum() > 0 else torch.randint(n, (1,), generator=gen)
        centroids[j] = x[pick]
        nearest = torch.minimum(nearest, ((x - centroids[j]) ** 2).sum(1))
    assign = torch.full((n,), -1, dtype=torch.long)
    for _ in range(max_iters):
        dist = torch.cdist(x, centroids).pow(2)
        new = dist.argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = assign == j
            if members.any():
                centroids[j] = x[members].mean(0)
            else:  # an empty cluster takes the point farthest from its centre
                far = dist.gather(1, assign[:, None]).squeeze(1).argmax()
                centroids[j] = x[far]
    dist = torch.cdist(x, centroids).pow(2)
    return centroids, dist.argmin(1), dist


def make_specialist_sets(covariance: Tensor, num_specialists: int, set_size: int = 0, min_size: int = 2,
                         normalize: bool = True, seed: int = 0) -> SpecialistSets:
    """Cluster the covariance's columns into specialist sets.

    set_size 0: the K-means clusters themselves (disjoint); clusters under `min_size` classes are
    dissolved into their members' next-nearest clusters. set_size N: each specialist takes the N
    classes nearest its centroid (sets overlap). `normalize` scales columns to unit length, so that
    classes cluster by whom they are confused with rather than by how often they are predicted
    (rare classes' columns are near zero and would otherwise fall into one cluster).
    """
    c = covariance.shape[0]
    if covariance.shape != (c, c):
        raise InputError(f"covariance must be square, got shape {tuple(covariance.shape)}")
    x = covariance.double()
    if normalize:
        x = x / x.norm(dim=0, keepdim=True).clamp_min(1e-30)
    cols = x.T.contiguous()
    _, assign, dist = kmeans(cols, num_specialists, seed=seed)
    if set_size > 0:
        if set_size >= c:
            raise InputError(f"--set-size {set_size} must be below the {c} classes (a specialist needs a dustbin)")
        sets = [torch.argsort(dist[:, m], stable=True)[:set_size].numpy() for m in range(num_specialists)]
    else:
        alive = torch.ones(num_specialists, dtype=torch.bool)
        while True:
            sizes = torch.bincount(assign, minlength=num_specialists)
            small = alive & (sizes < min_size)
            if not small.any() or alive.sum() <= 1:
                break
            alive[int(torch.nonzero(small)[0])] = False
            assign = dist.masked_fill(~alive[None, :], float("inf")).argmin(1)
        sets = [torch.nonzero(assign == m).squeeze(1).numpy() for m in range(num_specialists) if (assign == m).any()]
    unique: dict[tuple[int, ...], np.ndarray] = {}
    for s in sets:
        key = tuple(sorted(int(v) for v in s))
        if 0 < len(key) < c:
            unique.setdefault(key, np.asarray(key, dtype=np.int64))
    result = SpecialistSets(c, list(unique.values()),
                            {"num_clusters": num_specialists, "set_size": set_size, "min_size": min_size,
                             "normalize": normalize, "seed": seed})
    log.info("%d specialist sets of %s classes; classes covered 0/1/2+ times: %s", len(result),
             sorted(len(s) for s in result.sets), np.bincount(np.minimum(result.coverage(), 2), minlength=3).tolist())
    return result
