"""LDA on spliced MFCC and MLLT (semi-tied covariance) estimation (Kaldi's train_lda_mllt.sh).

The bindings have neither est-lda nor est-mllt, so both are estimated here in numpy:
- LDA: classes are pdfs of a previous alignment (silence frames left out, as Kaldi weights them
  to zero); the projection whitens the within-class covariance and keeps the `dim` directions
  of largest between-class variance.
- MLLT: Gopinath's row-by-row update of a square transform A maximising
  beta log|det A| - 1/2 sum_i a_i G_i a_i^T, with G_i = sum_j occ_j Sigma_j / var_ji over the diagonal
  Gaussians j of the current model (Kaldi's MlltAccs::Update).
"""

from __future__ import annotations

import logging

import kaldi_hmm_gmm as khg
import numpy as np

from asr_kd.gmm.blas import rows_tmatmul
from asr_kd.gmm.estimate import component_loglikes

log = logging.getLogger(__name__)


class LdaStats:
    """Per-class counts and sums and the total scatter, accumulated utterance by utterance."""

    def __init__(self, num_classes: int, dim: int):
        self.counts = np.zeros(num_classes)
        self.sums = np.zeros((num_classes, dim))
        self.scatter = np.zeros((dim, dim))

    def add(self, x: np.ndarray, classes: np.ndarray) -> None:
        x = x.astype(np.float64)
        self.counts += np.bincount(classes, minlength=self.counts.shape[0])
        np.add.at(self.sums, classes, x)
        self.scatter += rows_tmatmul(x, x)

    def estimate(self, dim: int = 40) -> np.ndarray:
        """(dim, input dim) projection: within-class covariance whitened, top between-class directions."""
        n, d = self.counts.sum(), self.scatter.shape[0]
        if dim > d:
            raise ValueError(f"LDA dimension {dim} exceeds the input dimension {d}")
        seen = self.counts > 0
        class_means = self.sums[seen] / self.counts[seen, None]
        mean = self.sums.sum(0) / n
        # within = E[x x^T] - sum_c n_c m_c m_c^T / n ; between = sum_c n_c m_c m_c^T / n - m m^T
        between_plus = (class_means * self.counts[seen, None]).T @ class_means / n
        within = self.scatter / n - between_plus
        between = between_plus - np.outer(mean, mean)
        chol_inv = np.linalg.inv(np.linalg.cholesky(within + 1e-6 * np.trace(within) / d * np.eye(d)))
        eigvals, eigvecs = np.linalg.eigh(chol_inv @ between @ chol_inv.T)
        order = np.argsort(eigvals)[::-1][:dim]
        log.info("LDA: %d classes, %d frames, kept %d of %d dims (eigenvalues %.2f .. %.2f)", int(seen.sum()), n,
                 dim, d, eigvals[order[0]], eigvals[order[-1]])
        return (eigvecs[:, order].T @ chol_inv).astype(np.float32)


def estimate_lda(x: np.ndarray, classes: np.ndarray, dim: int = 40) -> np.ndarray:
    """(dim, x.shape[1]) LDA projection from frames `x` labelled `classes`."""
    stats = LdaStats(int(classes.max()) + 1, x.shape[1])
    stats.add(x, classes)
    return stats.estimate(dim)


def mllt_stats(am: khg.AmDiagGmm, x: np.ndarray, pdf_ids: np.ndarray) -> tuple[np.ndarray, float]:
    """G (dim, dim, dim) and the frame count beta, from Viterbi pdf assignments and Gaussian posteriors."""
    dim = x.shape[1]
    scatters, inv_var_rows = [], []  # per Gaussian: occupancy-weighted scatter about its mean, 1/variance
    order = np.argsort(pdf_ids, kind="stable")
    counts = np.bincount(pdf_ids, minlength=am.num_pdfs)
    starts = np.concatenate([[0], np.cumsum(counts)])
    for p in range(am.num_pdfs):
        if counts[p] == 0:
            continue
        gmm = am.get_pdf(p)
        xp = x[order[starts[p]:starts[p + 1]]].astype(np.float64)
        ll = component_loglikes(gmm, xp)
        post = np.exp(ll - ll.max(axis=1, keepdims=True))
        post /= post.sum(axis=1, keepdims=True)
        means, inv_vars = gmm.means.astype(np.float64), gmm.inv_vars.astype(np.float64)
        for j in range(gmm.num_gauss):
            diff = xp - means[j]
            scatters.append(rows_tmatmul(diff * post[:, j:j + 1], diff).reshape(-1))
            inv_var_rows.append(inv_vars[j])
    # G_i = sum_j S_j / var_ji for all i at once: one (dim, J) x (J, dim*dim) product
    g = np.asarray(inv_var_rows).T @ np.asarray(scatters)
    return g.reshape(dim, dim, dim), float(len(pdf_ids))


def mllt_objf(a: np.ndarray, g: np.ndarray, beta: float) -> float:
    """beta log|det A| - 1/2 sum_i a_i G_i a_i^T (up to a constant)."""
    return beta * np.linalg.slogdet(a)[1] - 0.5 * float(np.einsum("ia,iab,ib->", a, g, a))


def estimate_mllt(g: np.ndarray, beta: float, num_iters: int = 10) -> np.ndarray:
    """Square MLLT transform by Gopinath's row updates, starting from the identity."""
    dim = g.shape[0]
    a = np.eye(dim)
    g_inv = np.linalg.inv(g)
    before = mllt_objf(a, g, beta)
    for _ in range(num_iters):
        for i in range(dim):
            cofactor = np.linalg.det(a) * np.linalg.inv(a)[:, i]
            row = cofactor @ g_inv[i]
            a[i] = row * np.sqrt(beta / (row @ cofactor))
    log.info("MLLT: objective gain %.4f per frame", (mllt_objf(a, g, beta) - before) / beta)
    return a


def transform_means(am: khg.AmDiagGmm, a: np.ndarray) -> None:
    """Means of every Gaussian mapped to the new feature space, mu' = A mu (gmm-transform-means)."""
    for p in range(am.num_pdfs):
        gmm = am.get_pdf(p)
        gmm.set_means((gmm.means.astype(np.float64) @ a.T).astype(np.float32))
    am.compute_gconsts()
