"""Cepstral mean and variance normalisation: network inputs (global, per speaker, per utterance) and GMM stats.

Network inputs follow Kaldi's nnet recipes for unseen speakers: with mode "speaker" every
utterance first loses its speaker's mean (computed over that speaker's utterances in the same
part, as apply-cmvn with spk2utt does), with "speaker_mvn" its speaker's mean and standard
deviation (apply-cmvn --norm-vars=true with spk2utt), with "speaker_cepstral_mvn" its speaker's mean and the
speaker's standard deviation of each cepstral coefficient (the orthonormal DCT of the mel bins: Kaldi's
per-speaker CMVN of MFCCs, mapped back to mel bins), with "speaker_cepstral_match" its speaker's mean and each
cepstral coefficient scaled from the speaker's deviation to the training speakers' pooled one (every speaker's
spectral detail brought to the training voices' level, not to unit variance), with "utterance" its own mean; then one
global mean and standard deviation, estimated on the training part after that step, bring every
dimension to zero mean and unit variance. Mode "global" is the last step alone. The same
`CmvnStats` file is applied when a frame bank is built and when a model scores or decodes cuts
(`normalised_features`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence

import numpy as np
from tqdm import tqdm

from asr_kd.utils.dct import dct_matrix
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json, read_json

_STD_FLOOR = 1e-5

NormMode = Literal["global", "speaker", "speaker_mvn", "speaker_cepstral_mvn", "speaker_cepstral_match", "utterance"]
NORM_MODES: tuple[str, ...] = ("global", "speaker", "speaker_mvn", "speaker_cepstral_mvn", "speaker_cepstral_match",
                               "utterance")
SPEAKER_MODES: tuple[str, ...] = ("speaker", "speaker_mvn", "speaker_cepstral_mvn", "speaker_cepstral_match")
# The modes whose group stats are of the features' cepstra (`cepstra`) rather than of the features.
CEPSTRAL_MODES: tuple[str, ...] = ("speaker_cepstral_mvn", "speaker_cepstral_match")
# The mode that scales each speaker's cepstra to a reference deviation (CmvnStats.cepstral_ref) instead of to 1.
MATCH_MODE = "speaker_cepstral_match"


def cepstra(feats: np.ndarray) -> np.ndarray:
    """(frames, dim) log-mel features as cepstra (DCT-II over the bins), float64; `from_cepstra` inverts it."""
    return feats.astype(np.float64) @ dct_matrix(feats.shape[-1]).T


def from_cepstra(ceps: np.ndarray) -> np.ndarray:
    """The mel-bin features whose `cepstra` are `ceps`."""
    return ceps @ dct_matrix(ceps.shape[-1])


@dataclass(frozen=True)
class GroupStats:
    """Mean (and standard deviation) of one speaker's or utterance's features, float64 (in the cepstral modes of
    their cepstra; in "speaker_cepstral_match" the deviation is relative to the reference one)."""

    mean: np.ndarray
    std: np.ndarray | None = None


@dataclass
class CmvnStats:
    """Per-dimension mean and standard deviation of features, from `count` frames.

    `mode` says what is removed first: nothing ("global"), the speaker's mean ("speaker"), the speaker's
    mean and standard deviation ("speaker_mvn"), the speaker's mean and each cepstral coefficient's
    deviation ("speaker_cepstral_mvn"), the speaker's mean and each cepstral coefficient's deviation relative to
    `cepstral_ref` ("speaker_cepstral_match") or the utterance's mean ("utterance").
    """

    mean: np.ndarray
    std: np.ndarray
    count: int
    mode: NormMode = "global"
    source: str = field(default="", compare=False)  # the file the stats were loaded from, for error messages
    # "speaker_cepstral_match": the training speakers' pooled within-speaker deviation of each cepstral coefficient.
    cepstral_ref: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in NORM_MODES:
            raise InputError(f"CMVN mode must be one of {', '.join(NORM_MODES)}, got {self.mode!r}")

    @property
    def name(self) -> str:
        """'the CMVN stats FILE' (no file if they were not loaded from one), for error messages."""
        return f"the CMVN stats {self.source}" if self.source else "the CMVN stats"

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return int(self.mean.shape[0])

    def apply(self, feats: np.ndarray, group: GroupStats | None = None) -> np.ndarray:
        """Normalise (frames, dim) features; `group` is the speaker's (or utterance's) stats in those modes.

        In "utterance" mode the group defaults to the features' own mean; the speaker modes need it given.
        """
        if feats.shape[-1] != self.dim:
            raise InputError(f"features of dim {feats.shape[-1]}, {self.name} have dim {self.dim}")
        return ((group_step(self.mode, feats, group) - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        out = {"mode": self.mode, "mean": self.mean.tolist(), "std": self.std.tolist(), "count": self.count}
        if self.cepstral_ref is not None:
            out["cepstral_ref"] = self.cepstral_ref.tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "CmvnStats":
        ref = d.get("cepstral_ref")
        return cls(np.asarray(d["mean"], dtype=np.float32), np.asarray(d["std"], dtype=np.float32), int(d["count"]),
                   d.get("mode", "global"), cepstral_ref=None if ref is None else np.asarray(ref, dtype=np.float64))

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "CmvnStats":
        """Read stats written by `save`; a missing file is an InputError naming it."""
        if not Path(path).is_file():
            raise InputError(f"CMVN stats file {path} does not exist (run the feature stage first)")
        stats = cls.from_dict(read_json(path))
        stats.source = str(path)
        if stats.mode == MATCH_MODE and stats.cepstral_ref is None:
            raise InputError(f"CMVN stats file {path}: mode {MATCH_MODE} without the training speakers' cepstral "
                             "deviation (cepstral_ref); rerun the feature stage")
        return stats


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

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (floored), float64."""
        mean = self.total / self.count
        return mean, np.sqrt(np.maximum(self.total_sq / self.count - np.square(mean), _STD_FLOOR**2))

    def stats(self) -> CmvnStats:
        mean, std = self.mean_std()
        return CmvnStats(mean.astype(np.float32), std.astype(np.float32), self.count)


def group_step(mode: str, feats: np.ndarray, group: GroupStats | None = None) -> np.ndarray:
    """The step before the global one: the group's mean removed, and in "speaker_mvn" its deviation divided out
    (in the cepstral modes the deviation of each cepstral coefficient, the result back in mel bins).

    "global" has no such step; "utterance" takes the features' own mean when no group is given; the speaker
    modes need the speaker's stats.
    """
    if mode == "global":
        return feats
    if mode in CEPSTRAL_MODES and group is not None:
        return from_cepstra((cepstra(feats) - group.mean) / group.std)
    if group is None and mode == "utterance":
        group = GroupStats(utterance_mean(feats))
    if group is None:
        raise InputError("speaker CMVN needs the speaker's stats (normalised_features computes them)")
    feats = feats - group.mean
    return feats / group.std if mode == "speaker_mvn" else feats


def utterance_mean(feats: np.ndarray) -> np.ndarray:
    """Mean over frames (float64) of one utterance's features; zeros for an empty one."""
    return feats.astype(np.float64).mean(axis=0) if feats.shape[0] else np.zeros(feats.shape[1])


def speaker_of(cut: Any) -> str:
    """The speaker of a cut (its first supervision's); InputError naming the cut when there is none."""
    speaker = cut.supervisions[0].speaker if cut.supervisions else None
    if not speaker:
        raise InputError(f"cut {cut.id}: no speaker in its supervision; speaker CMVN needs one "
                         "(use the 'utterance' mode for data without speakers)")
    return speaker


def _speaker_accumulators(cuts: Iterable, mode: str) -> dict[str, _Accumulator]:
    """Each speaker's sums over its cuts' features (their cepstra in the cepstral modes)."""
    accumulators: dict[str, _Accumulator] = {}
    for cut in cuts:
        feats = _load(cut)
        accumulators.setdefault(speaker_of(cut), _Accumulator()).add(
            cepstra(feats) if mode in CEPSTRAL_MODES else feats)
    return accumulators


def _pooled_std(accumulators: dict[str, _Accumulator]) -> np.ndarray:
    """The within-speaker standard deviation of each dimension, pooled over the speakers' frames."""
    frames = sum(acc.count for acc in accumulators.values())
    if frames == 0:
        raise InputError("no frames to compute CMVN statistics from")
    return np.sqrt(sum(acc.count * np.square(acc.mean_std()[1]) for acc in accumulators.values()) / frames)


def speaker_stats(cuts: Iterable, mode: str, cepstral_ref: np.ndarray | None = None) -> dict[str, GroupStats]:
    """Mean and standard deviation (float64) of each speaker's features over its cuts (of their cepstra in the
    cepstral modes; in "speaker_cepstral_match" the deviation divided by `cepstral_ref`, which that mode needs)."""
    return _group_stats(_speaker_accumulators(cuts, mode), mode, cepstral_ref)


def _group_stats(accumulators: dict[str, _Accumulator], mode: str,
                 cepstral_ref: np.ndarray | None) -> dict[str, GroupStats]:
    """`speaker_stats` from each speaker's sums."""
    if mode == MATCH_MODE and cepstral_ref is None:
        raise InputError("speaker_cepstral_match CMVN needs the training speakers' cepstral deviation (cepstral_ref "
                         "in its stats file; rerun the feature stage)")
    scale = cepstral_ref if mode == MATCH_MODE else 1.0
    groups = {}
    for spk, acc in accumulators.items():
        mean, std = acc.mean_std()
        groups[spk] = GroupStats(mean, std / scale)
    return groups


def part_normaliser(cuts: Sequence, stats: CmvnStats) -> Callable[[Any, np.ndarray], np.ndarray]:
    """A function (cut, features) -> normalised features for the cuts of one part.

    In the speaker modes it holds every speaker's stats over `cuts` (one pass over their features).
    """
    groups = speaker_stats(cuts, stats.mode, stats.cepstral_ref) if stats.mode in SPEAKER_MODES else {}

    def normalise(cut: Any, feats: np.ndarray) -> np.ndarray:
        try:
            return stats.apply(feats, groups[speaker_of(cut)] if stats.mode in SPEAKER_MODES else None)
        except InputError as err:
            raise InputError(f"cut {cut.id}: {err}") from err

    return normalise


def normalised_features(cuts: Sequence, stats: CmvnStats) -> Iterator[tuple[Any, np.ndarray]]:
    """(cut, normalised features) for every cut, speaker stats taken over these cuts in the speaker modes."""
    normalise = part_normaliser(cuts, stats)
    for cut in cuts:
        yield cut, normalise(cut, _load(cut))


def compute_input_norm(cuts: Sequence, mode: NormMode) -> CmvnStats:
    """Global mean/std of the training cuts' features after the speaker or utterance step of `mode`."""
    if mode not in NORM_MODES:
        raise InputError(f"CMVN mode must be one of {', '.join(NORM_MODES)}, got {mode!r}")
    accumulators = _speaker_accumulators(cuts, mode) if mode in SPEAKER_MODES else {}
    ref = _pooled_std(accumulators) if mode == MATCH_MODE else None
    groups = _group_stats(accumulators, mode, ref)
    acc = _Accumulator()
    for cut in tqdm(cuts, desc=f"{mode} CMVN stats", leave=False):
        acc.add(group_step(mode, _load(cut), groups[speaker_of(cut)] if mode in SPEAKER_MODES else None))
    if acc.count == 0:
        raise InputError("no frames to compute CMVN statistics from")
    stats = acc.stats()
    stats.mode = mode
    stats.cepstral_ref = ref
    return stats


def _load(cut: Any) -> np.ndarray:
    feats = cut.load_features()
    if not np.all(np.isfinite(feats)):
        raise InputError(f"cut {cut.id}: features contain NaN or inf ({cut.features.storage_path})")
    return feats


def compute_cmvn(cuts: Iterable, per_speaker: bool = False) -> CmvnStats | dict[str, CmvnStats]:
    """Global CMVN stats over the cuts' features, or a dict speaker -> stats."""
    accumulators: dict[str, _Accumulator] = {}
    for cut in tqdm(cuts, desc="CMVN stats", leave=False):
        key = speaker_of(cut) if per_speaker else "global"
        accumulators.setdefault(key, _Accumulator()).add(_load(cut))
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
