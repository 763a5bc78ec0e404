"""The orthonormal DCT-II over a feature vector's bins: log-mel filterbank features to cepstra and back."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def dct_matrix(dim: int) -> np.ndarray:
    """(dim, dim) float64 orthonormal DCT-II: row k weighs the bins into cepstral coefficient k.

    Orthonormal, so its transpose is its inverse. Made once per dim (every utterance normalised in a cepstral
    mode, speaker_cepstral_mvn or speaker_cepstral_match, goes through it twice) and read-only, since callers share it.
    """
    n = np.arange(dim)
    basis = np.cos(np.pi * (n + 0.5) * n[:, None] / dim) * np.sqrt(2.0 / dim)
    basis[0] /= np.sqrt(2.0)
    basis.setflags(write=False)
    return basis
