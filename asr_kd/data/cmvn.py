"""Cepstral mean and variance normalisation statistics (global or per speaker)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json, read_json

_STD_FLOOR = 1e-5


@dataclass
class CmvnStats:
    """Per-dimension mean and standard deviation of features, from `count` frames."""

    mean: np.ndarray
    std: np.ndarray
    count: int

    def apply(self, feats: np.ndarray) -> np.ndarray:
        """Normalise (frames, dim) features to zero mean and unit variance per dimension."""
        if feats.shape[-1] != self.mean.shape[0]:
            raise InputError(f"features have dim {feats.shape[-1]} but the CMVN stats have dim {self.mean.shape[0]}")
        return ((feats - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "count": self.count}

    @classmethod
    def from_dict(cls, d: dict) -> "CmvnStats":
        return cls(np.asarray(d["mean"], dtype=np.float32), np.asarray(d["std"], dtype=np.float32), int(d["count"]))

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "CmvnStats":
        """Read stats written by `save`; a missing file is an InputError naming it."""
        if not Path(path).is_file():
            raise InputError(f"CMVN stats file {path} does not exist (run the feature stage first)")
        return cls.from_dict(read_json(path))


class _Accumulator:
    """Running sums in float64 so millions of frames do not lose precision."""

    def __init__(self) -> None:
        self.total = None
        self.total_sq = None
        self.count = 0

    def add(self, feats: np.ndarray) -> None:
        feats = feats.astype(np.float64)
        if self.total is None:
            self.total = np.zeros(feats.shape[1])
            self.total_sq = np.zeros(feats.shape[1])
        self.total += feats.sum(axis=0)
        self.total_sq += np.square(feats).sum(axis=0)
        self.count += feats.shape[0]

    def stats(self) -> CmvnStats:
        mean = self.total / self.count
        var = np.maximum(self.total_sq / self.count - np.square(mean), _STD_FLOOR**2)
        return CmvnStats(mean.astype(np.float32), np.sqrt(var).astype(np.float32), self.count)


def compute_cmvn(cuts: Iterable, per_speaker: bool = False) -> CmvnStats | dict[str, CmvnStats]:
    """Global CMVN stats over the cuts' features, or a dict speaker -> stats."""
    accumulators: dict[str, _Accumulator] = {}
    for cut in tqdm(cuts, desc="CMVN stats", leave=False):
        feats = cut.load_features()
        if not np.all(np.isfinite(feats)):
            raise InputError(f"cut {cut.id}: features contain NaN or inf ({cut.features.storage_path})")
        key = cut.supervisions[0].speaker if per_speaker else "global"
        accumulators.setdefault(key, _Accumulator()).add(feats)
    if not accumulators:
        raise InputError("no cuts to compute CMVN statistics from")
    if per_speaker:
        return {spk: acc.stats() for spk, acc in accumulators.items()}
    return accumulators["global"].stats()


def save_speaker_cmvn(stats: dict[str, CmvnStats], path: str | Path) -> None:
    """Write per-speaker stats as one JSON object keyed by speaker."""
    atomic_write_json(path, {spk: s.to_dict() for spk, s in stats.items()})


def load_speaker_cmvn(path: str | Path) -> dict[str, CmvnStats]:
    """Read per-speaker stats written by `save_speaker_cmvn`."""
    if not Path(path).is_file():
        raise InputError(f"per-speaker CMVN file {path} does not exist")
    return {spk: CmvnStats.from_dict(d) for spk, d in read_json(path).items()}
