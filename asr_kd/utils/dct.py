"""The orthonormal DCT-II over a feature vector's bins: log-mel filterbank features to cepstra and back."""

from __future__ import annotations

import numpy as np


def dct_matrix(dim: int) -> np.ndarray:
    """(dim, dim) float64 orthonormal DCT-II: row k weighs the bins into cepstral coefficient k.

    Orthonormal, so its transpose is its inverse.
    """
    n = np.arange(dim)
    basis = np.cos(np.pi * (n + 0.5) * n[:, None] / dim) * np.sqrt(2.0 / dim)
    basis[0] /= np.sqrt(2.0)
    return basis
