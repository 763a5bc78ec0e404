"""Viterbi EM for diagonal GMMs, vectorised in numpy, with Kaldi's update rules.

Frames are grouped by the pdf their alignment assigns them; for each pdf one matrix product gives
every frame's Gaussian posteriors, so an iteration over ~1M frames costs seconds, not the minutes a
per-frame loop over the bindings' accumulators would. The update itself is Kaldi's
(`MleDiagGmmUpdate`: variance floor, removal of low-count Gaussians), applied in place.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass

import kaldi_hmm_gmm as khg
import numpy as np
from _kaldi_hmm_gmm import mle_diag_gmm_update  # not re-exported by kaldi_hmm_gmm/__init__

from asr_kd.gmm.blas import rows_matmul, rows_tmatmul

log = logging.getLogger(__name__)

GMM_ALL = int(khg.GmmUpdateFlags.kGmmAll.value)


@dataclass
class GmmStats:
    """Sufficient statistics per pdf: occupancy (M,), sum x (M, D), sum x^2 (M, D)."""

    occ: list[np.ndarray]
    x: list[np.ndarray]
    x2: list[np.ndarray]
    tot_loglike: float
    num_frames: int

    def pdf_occupancy(self) -> np.ndarray:
        """Frames assigned to each pdf."""
        return np.array([o.sum() for o in self.occ], dtype=np.float32)


def init_flat_am(num_pdfs: int, feats: np.ndarray) -> khg.AmDiagGmm:
    """Every pdf one Gaussian with the global mean and variance (Kaldi's gmm-init-mono)."""
    mean = feats.mean(axis=0, dtype=np.float64)
    var = np.maximum(feats.var(axis=0, dtype=np.float64), 1e-3)
    gmm = khg.DiagGmm(1, feats.shape[1])
    gmm.set_weights(np.ones(1, dtype=np.float32))
    gmm.set_invvars_and_means((1.0 / var)[None].astype(np.float32), mean[None].astype(np.float32))
    gmm.compute_gconsts()
    am = khg.AmDiagGmm()
    am.init(gmm, num_pdfs)
    return am


def component_loglikes(gmm: khg.DiagGmm, x: np.ndarray) -> np.ndarray:
    """(frames, num_gauss) log weight + log N(x; mean, var) for a DiagGmm."""
    x = x.astype(np.float64)
    weights = np.concatenate([gmm.means_invvars.astype(np.float64), -0.5 * gmm.inv_vars.astype(np.float64)], axis=1)
    return gmm.gconsts[None, :] + rows_matmul(np.concatenate([x, x * x], axis=1), weights.T)


def pdf_loglikes(am: khg.AmDiagGmm, feats: np.ndarray) -> np.ndarray:
    """(frames, num_pdfs) GMM log-likelihoods, the score matrix a hybrid decoder takes."""
    out = np.empty((feats.shape[0], am.num_pdfs), dtype=np.float32)
    for p in range(am.num_pdfs):
        out[:, p] = _logsumexp(component_loglikes(am.get_pdf(p), feats))[0]
    return out


def _logsumexp(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise log-sum-exp and the normalised posteriors."""
    top = a.max(axis=1, keepdims=True)
    e = np.exp(a - top)
    s = e.sum(axis=1, keepdims=True)
    return (np.log(s) + top)[:, 0], e / s


def accumulate(am: khg.AmDiagGmm, feats: np.ndarray, pdf_ids: np.ndarray) -> GmmStats:
    """Gaussian-level statistics given each frame's pdf (one matrix product per pdf)."""
    num_pdfs = am.num_pdfs
    order = np.argsort(pdf_ids, kind="stable")
    counts = np.bincount(pdf_ids, minlength=num_pdfs)
    starts = np.concatenate([[0], np.cumsum(counts)])
    occ, xs, x2s = [], [], []
    tot = 0.0
    dim = feats.shape[1]
    for p in range(num_pdfs):
        gmm = am.get_pdf(p)
        m = gmm.num_gauss
        if counts[p] == 0:
            occ.append(np.zeros(m))
            xs.append(np.zeros((m, dim)))
            x2s.append(np.zeros((m, dim)))
            continue
        x = feats[order[starts[p]:starts[p + 1]]].astype(np.float64)
        frame_ll, post = _logsumexp(component_loglikes(gmm, x))
        tot += float(frame_ll.sum())
        occ.append(post.sum(axis=0))
        stats = rows_tmatmul(post, np.concatenate([x, x * x], axis=1))
        xs.append(stats[:, :dim])
        x2s.append(stats[:, dim:])
    return GmmStats(occ, xs, x2s, tot, int(len(pdf_ids)))


def update(am: khg.AmDiagGmm, stats: GmmStats, min_gaussian_occupancy: float = 10.0,
           min_variance: float = 1e-3) -> float:
    """Kaldi's ML update of every pdf in place; returns the objective improvement per frame."""
    opts = khg.MleDiagGmmOptions(min_gaussian_occupancy=min_gaussian_occupancy, min_variance=min_variance)
    tot_impr = 0.0
    for p in range(am.num_pdfs):
        if stats.occ[p].sum() <= 0:
            continue  # keep the old parameters of a pdf no frame was aligned to
        gmm = am.get_pdf(p)
        acc = khg.AccumDiagGmm(gmm, GMM_ALL)
        for g in range(gmm.num_gauss):
            acc.add_stats_for_component(g, float(stats.occ[p][g]), stats.x[p][g], stats.x2[p][g])
        impr, *_ = mle_diag_gmm_update(opts, acc, GMM_ALL, gmm)
        tot_impr += impr
    am.compute_gconsts()
    return tot_impr / max(stats.num_frames, 1)


def split_targets(pdf_occupancy: np.ndarray, target_gauss: int, power: float, min_count: float) -> np.ndarray:
    """Gaussians per pdf after mixing up to `target_gauss` (Kaldi's GetSplitTargets).

    Each pdf starts at one Gaussian; the next Gaussian goes to the pdf with the largest
    occupancy^power per Gaussian, unless that would leave it fewer than `min_count` frames per
    Gaussian, in which case the pdf is closed. Ties go to the lower pdf index.
    """
    occ = np.asarray(pdf_occupancy, dtype=np.float64)
    targets = np.ones(len(occ), dtype=np.int64)
    heap = [(-(o ** power), p) for p, o in enumerate(occ)]
    heapq.heapify(heap)
    total = len(occ)
    while total < target_gauss and heap:
        neg_priority, p = heapq.heappop(heap)
        if neg_priority == 0:
            break  # nothing left that may split
        if (targets[p] + 1) * min_count >= occ[p]:
            continue  # closed: too few frames for another Gaussian
        targets[p] += 1
        total += 1
        heapq.heappush(heap, (-(occ[p] ** power) / targets[p], p))
    return targets


def split_gaussians(gmm: khg.DiagGmm, target: int, perturb_factor: float, rng: np.random.Generator) -> None:
    """Split `gmm`'s heaviest Gaussian in two until it has `target` (Kaldi's DiagGmm::Split).

    The halves' means move apart by +-perturb_factor standard deviations along a random direction
    drawn from `rng`, so a seeded generator makes mixing up reproducible (the bindings' own split
    draws from a randomly seeded generator: two runs of the same training differed).
    """
    weights = gmm.weights.astype(np.float64)
    inv_vars = gmm.inv_vars.astype(np.float64)
    means = gmm.means_invvars.astype(np.float64) / inv_vars
    n, dim = inv_vars.shape
    weights = np.concatenate([weights, np.zeros(target - n)])
    inv_vars = np.concatenate([inv_vars, np.zeros((target - n, dim))])
    means = np.concatenate([means, np.zeros((target - n, dim))])
    for new in range(n, target):
        heaviest = int(np.argmax(weights[:new]))
        weights[heaviest] /= 2
        weights[new] = weights[heaviest]
        inv_vars[new] = inv_vars[heaviest]
        step = perturb_factor * rng.standard_normal(dim) / np.sqrt(inv_vars[heaviest])
        means[new] = means[heaviest] + step
        means[heaviest] -= step
    gmm.resize(target, dim)
    gmm.set_weights(weights.astype(np.float32))
    gmm.set_invvars_and_means(inv_vars.astype(np.float32), means.astype(np.float32))
    gmm.compute_gconsts()


def mix_up(am: khg.AmDiagGmm, pdf_occupancy: np.ndarray, target_gauss: int, rng: np.random.Generator,
           power: float = 0.2, min_count: float = 20.0, perturb_factor: float = 0.01) -> None:
    """Split Gaussians towards `target_gauss` in total, allocating by occupancy^power (Kaldi's --mix-up)."""
    if target_gauss <= am.num_gauss:
        return
    targets = split_targets(pdf_occupancy, target_gauss, power, min_count)
    for p in range(am.num_pdfs):
        gmm = am.get_pdf(p)
        if targets[p] > gmm.num_gauss:
            split_gaussians(gmm, int(targets[p]), perturb_factor, rng)
    am.compute_gconsts()


def update_transitions(transition_model: khg.TransitionModel, alignments: list[np.ndarray]) -> float:
    """ML re-estimation of transition probabilities from transition-id alignments; returns objf gain/frame."""
    counts = np.zeros(transition_model.num_transition_ids + 1, dtype=np.float64)
    for ali in alignments:
        counts += np.bincount(ali, minlength=counts.shape[0])
    impr, count = transition_model.mle_update(counts, khg.MleTransitionUpdateConfig())
    return impr / max(count, 1.0)
