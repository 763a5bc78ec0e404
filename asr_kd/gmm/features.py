"""GMM features: MFCC as the DCT of the 40-d log-mel fbank, per-speaker CMVN, deltas (39-d) or LDA+MLLT.

Kaldi's MFCC is the DCT-II of log mel energies followed by cepstral liftering; taking it from the
very fbank the neural nets use keeps the frame counts of both systems identical by construction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from tqdm import tqdm

from asr_kd.gmm.blas import rows_matmul
from asr_kd.utils.errors import InputError

log = logging.getLogger(__name__)


def dct_matrix(num_ceps: int, num_bins: int) -> np.ndarray:
    """Orthonormal DCT-II rows 0..num_ceps-1 as a (num_bins, num_ceps) matrix (Kaldi's ComputeDctMatrix)."""
    n = np.arange(num_bins)
    k = np.arange(num_ceps)[:, None]
    mat = np.cos(np.pi / num_bins * (n + 0.5) * k) * np.sqrt(2.0 / num_bins)
    mat[0] = np.sqrt(1.0 / num_bins)
    return mat.T.astype(np.float32)


def lifter_coeffs(num_ceps: int, cepstral_lifter: float = 22.0) -> np.ndarray:
    """Kaldi's cepstral lifter 1 + Q/2 sin(pi i / Q)."""
    i = np.arange(num_ceps)
    return (1.0 + 0.5 * cepstral_lifter * np.sin(np.pi * i / cepstral_lifter)).astype(np.float32)


def mfcc_from_fbank(fbank: np.ndarray, num_ceps: int = 13, cepstral_lifter: float = 22.0) -> np.ndarray:
    """(frames, num_mel) log-mel fbank -> (frames, num_ceps) liftered MFCC."""
    mat = dct_matrix(num_ceps, fbank.shape[1])
    return rows_matmul(fbank.astype(np.float32), mat) * lifter_coeffs(num_ceps, cepstral_lifter)


def _delta_scales(order: int, window: int = 2) -> list[np.ndarray]:
    """Kaldi's DeltaFeatures filters: order 1 is the regression window, order k its k-fold convolution."""
    scales = [np.array([1.0])]
    base = np.arange(-window, window + 1, dtype=np.float64)
    base /= np.sum(base**2)
    for _ in range(order):
        scales.append(np.convolve(scales[-1], base))
    return scales


def add_deltas(feats: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """Append delta and delta-delta features, edge frames replicated (Kaldi's add-deltas)."""
    outputs = [feats]
    for scale in _delta_scales(order, window)[1:]:
        half = len(scale) // 2
        padded = np.pad(feats, ((half, half), (0, 0)), mode="edge")
        num = feats.shape[0]
        out = np.zeros_like(feats, dtype=np.float64)
        for j, s in enumerate(scale):
            out += s * padded[j : j + num]
        outputs.append(out.astype(np.float32))
    return np.concatenate(outputs, axis=1)


def splice(feats: np.ndarray, context: int = 3) -> np.ndarray:
    """Stack each frame with `context` frames either side, edges replicated (Kaldi's splice-feats)."""
    padded = np.pad(feats, ((context, context), (0, 0)), mode="edge")
    num = feats.shape[0]
    return np.concatenate([padded[j:j + num] for j in range(2 * context + 1)], axis=1)


@dataclass
class GmmFeatures:
    """GMM features of a set of cuts: `feats[cut_id]` (frames, dim) float32 (MFCC + deltas, or
    spliced MFCC through an LDA+MLLT `transform`), the CMVN'd MFCC in `base`, `speaker[cut_id]`."""

    feats: dict[str, np.ndarray]
    base: dict[str, np.ndarray]
    speaker: dict[str, str]

    @property
    def dim(self) -> int:
        return next(iter(self.feats.values())).shape[1]

    def num_frames(self) -> int:
        return sum(f.shape[0] for f in self.feats.values())

    def apply_transform(self, transform: np.ndarray, splice_context: int = 3) -> None:
        """Replace `feats` by the spliced base MFCC times `transform.T` (an LDA[+MLLT] matrix)."""
        expected = self.base_dim * (2 * splice_context + 1)
        if transform.shape[1] != expected:
            raise InputError(f"feature transform has {transform.shape[1]} inputs but spliced MFCC have {expected}")
        t = transform.T.astype(np.float32)
        self.feats = {u: rows_matmul(splice(b, splice_context), t).astype(np.float32) for u, b in self.base.items()}

    @property
    def base_dim(self) -> int:
        return next(iter(self.base.values())).shape[1]


def compute_gmm_features(cuts: Iterable, num_ceps: int = 13, cmvn: str = "speaker", delta_order: int = 2,
                         transform: np.ndarray | None = None) -> GmmFeatures:
    """Load each cut's fbank and turn it into CMVN-normalised MFCC with deltas.

    `cmvn` is "speaker" (mean normalisation per speaker, Kaldi's default), "global" or "none".
    With `transform` (an LDA+MLLT system's `final.mat`), features are the spliced MFCC through it
    instead of deltas.
    """
    if cmvn not in ("speaker", "global", "none"):
        raise InputError(f"unknown CMVN mode {cmvn!r} (use speaker, global or none)")
    mfcc: dict[str, np.ndarray] = {}
    speaker: dict[str, str] = {}
    for cut in tqdm(cuts, desc="MFCC from fbank", leave=False):
        if not cut.has_features:
            raise InputError(f"cut {cut.id} has no features (run the fbank stage first)")
        fbank = cut.load_features()
        if fbank.ndim != 2 or fbank.shape[0] != cut.num_frames:
            raise InputError(f"cut {cut.id}: fbank shape {fbank.shape} does not match num_frames {cut.num_frames}")
        if not np.all(np.isfinite(fbank)):
            raise InputError(f"cut {cut.id}: fbank contains NaN or inf")
        mfcc[cut.id] = mfcc_from_fbank(fbank, num_ceps)
        spk = cut.supervisions[0].speaker if cut.supervisions and cut.supervisions[0].speaker else cut.id
        speaker[cut.id] = spk
    if not mfcc:
        raise InputError("no cuts to compute GMM features for")
    if cmvn != "none":
        groups: dict[str, list[str]] = {}
        for cid, spk in speaker.items():
            groups.setdefault(spk if cmvn == "speaker" else "global", []).append(cid)
        for ids in groups.values():
            mean = np.concatenate([mfcc[i] for i in ids]).mean(axis=0)
            for i in ids:
                mfcc[i] = mfcc[i] - mean
    features = GmmFeatures({}, mfcc, speaker)
    if transform is None:
        features.feats = {cid: add_deltas(m, delta_order) for cid, m in mfcc.items()}
    else:
        features.apply_transform(transform)
    return features
