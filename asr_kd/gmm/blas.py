"""Matrix products over blocks of rows, so that OpenBLAS never starts its thread pool.

On a busy 2-core machine a threaded product of a (100k, 8) by (100k, 39) pair was measured 20x
slower than the same product on one thread; blocks of 256 rows stay below OpenBLAS's threading
threshold without an environment variable that must be set before numpy is imported.
"""

from __future__ import annotations

import numpy as np

BLOCK = 256


def rows_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for a tall `a` (rows, k), block of rows by block of rows."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    for i in range(0, a.shape[0], BLOCK):
        out[i:i + BLOCK] = a[i:i + BLOCK] @ b
    return out


def rows_tmatmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a.T @ b for tall `a` (rows, m) and `b` (rows, d): a sum over blocks of rows."""
    out = np.zeros((a.shape[1], b.shape[1]), dtype=np.result_type(a, b))
    for i in range(0, a.shape[0], BLOCK):
        out += a[i:i + BLOCK].T @ b[i:i + BLOCK]
    return out
