"""Triphone training on a tree built from a previous system's alignment (Kaldi's train_deltas.sh)."""

from __future__ import annotations

import logging

import kaldi_hmm_gmm as khg
import numpy as np

from asr_kd.gmm.align import AlignOptions, AlignResult, align_with_system
from asr_kd.gmm.features import GmmFeatures, splice
from asr_kd.gmm.lang_files import GmmLang
from asr_kd.gmm.lda_mllt import LdaStats, estimate_mllt, mllt_stats, transform_means
from asr_kd.gmm.system import GmmSystem, TransitionArrays
from asr_kd.gmm.train import TrainSchedule, run_em
from asr_kd.gmm.tree import accumulate_tree_stats, build_tree, leaf_stats, phone_questions
from asr_kd.utils.errors import InputError

log = logging.getLogger(__name__)


def tri_schedule(num_iters: int = 20, target_gauss: int = 10000) -> TrainSchedule:
    """Realign every 5 iterations and grow Gaussians over the first 3/4 of the iterations."""
    # No realignment at the last iteration: the final alignment with the new model follows.
    return TrainSchedule(num_iters=num_iters, realign_iters=tuple(range(5, num_iters, 5)),
                         target_gauss=target_gauss, max_iter_inc=max(1, int(num_iters * 0.75)))


def init_from_tree_stats(lang: GmmLang, feats: GmmFeatures, prev: GmmSystem,
                         prev_alignments: dict[str, np.ndarray], num_leaves: int,
                         min_leaf_count: float = 100.0) -> GmmSystem:
    """Build the tree on `prev`'s alignment and give every leaf its pooled single Gaussian (gmm-init-model)."""
    arrays = TransitionArrays.from_model(prev.transition_model)
    stats = accumulate_tree_stats(feats.feats, prev_alignments, arrays)
    phones = list(lang.topo.phones)
    questions = phone_questions(stats, phones, lang.silence, lang.extra_questions)
    num_classes = dict(zip(phones, (lang.topo.num_pdf_classes(p) for p in phones)))
    tree = build_tree(stats, num_classes, questions, num_leaves, lang.roots, min_count=min_leaf_count)
    ctx = tree.to_context_dependency()
    tm = khg.TransitionModel(ctx, lang.topo)
    count, sums, sumsq = leaf_stats(tree, stats)
    global_mean = sums.sum(0) / count.sum()
    global_var = np.maximum(sumsq.sum(0) / count.sum() - global_mean**2, 1e-3)
    am = khg.AmDiagGmm()
    for leaf in range(tree.num_leaves):
        if count[leaf] > 0:
            mean = sums[leaf] / count[leaf]
            var = np.maximum(sumsq[leaf] / count[leaf] - mean**2, 1e-3)
        else:  # a (phone, state) never seen in training: the global Gaussian
            mean, var = global_mean, global_var
        gmm = khg.DiagGmm(1, stats.dim)
        gmm.set_weights(np.ones(1, dtype=np.float32))
        gmm.set_invvars_and_means((1.0 / var)[None].astype(np.float32), mean[None].astype(np.float32))
        gmm.compute_gconsts()
        am.add_pdf(gmm)
    if am.num_pdfs != tm.num_pdfs:
        raise RuntimeError(f"tree has {tm.num_pdfs} pdfs but {am.num_pdfs} GMMs were made")
    return GmmSystem(ctx, tm, am)


def initial_tied_alignment(system: GmmSystem, lang: GmmLang, feats: GmmFeatures, transcripts: dict[str, list[int]],
                           align_opts: AlignOptions, name: str) -> AlignResult:
    """Alignment with the freshly tied single-Gaussian model; an error when nothing aligns."""
    first = align_with_system(system, lang, feats.feats, transcripts, align_opts, f"{name} initial alignment")
    if not first.alignments:
        raise InputError(f"{name}: no utterance could be aligned with the initial triphone model")
    return first


def train_triphone(lang: GmmLang, feats: GmmFeatures, transcripts: dict[str, list[int]], prev: GmmSystem,
                   prev_alignments: dict[str, np.ndarray], num_leaves: int, schedule: TrainSchedule | None = None,
                   align_opts: AlignOptions | None = None, name: str = "tri"
                   ) -> tuple[GmmSystem, dict[str, np.ndarray], list[str]]:
    """Tree from `prev`'s alignment, realignment with the tied model, EM with mixing up, final alignment."""
    if not prev_alignments:
        raise InputError(f"{name}: the previous system aligned no utterance")
    schedule = schedule or tri_schedule()
    align_opts = align_opts or AlignOptions()
    system = init_from_tree_stats(lang, feats, prev, prev_alignments, num_leaves)
    # The tied single-Gaussian model already beats the previous system's, so aligning with it
    # replaces Kaldi's convert-ali (which the bindings lack).
    first = initial_tied_alignment(system, lang, feats, transcripts, align_opts, name)
    run_em(system, lang, feats, transcripts, first.alignments, schedule, align_opts, name)
    final = align_with_system(system, lang, feats.feats, transcripts, align_opts, f"{name} final alignment")
    return system, final.alignments, final.failed


def train_lda_mllt(lang: GmmLang, feats: GmmFeatures, transcripts: dict[str, list[int]], prev: GmmSystem,
                   prev_alignments: dict[str, np.ndarray], num_leaves: int, schedule: TrainSchedule | None = None,
                   align_opts: AlignOptions | None = None, name: str = "tri2", lda_dim: int = 40,
                   splice_context: int = 3, mllt_iters: tuple[int, ...] = (2, 4, 6, 12)
                   ) -> tuple[GmmSystem, dict[str, np.ndarray], list[str]]:
    """Triphones on LDA+MLLT features: LDA from `prev`'s alignment, MLLT re-estimated during EM.

    `feats` is switched to the new features in place; the system's `transform` maps spliced
    (+-`splice_context`) MFCC to them.
    """
    if not prev_alignments:
        raise InputError(f"{name}: the previous system aligned no utterance")
    schedule = schedule or tri_schedule()
    align_opts = align_opts or AlignOptions()
    arrays = TransitionArrays.from_model(prev.transition_model)
    stats = LdaStats(prev.transition_model.num_pdfs, feats.base_dim * (2 * splice_context + 1))
    for utt, ali in prev_alignments.items():
        speech = ~np.isin(arrays.phone[ali], lang.silence)  # Kaldi gives silence frames weight 0
        stats.add(splice(feats.base[utt], splice_context)[speech], arrays.pdf[ali][speech])
    transform = stats.estimate(lda_dim)
    feats.apply_transform(transform, splice_context)
    system = init_from_tree_stats(lang, feats, prev, prev_alignments, num_leaves)
    first = initial_tied_alignment(system, lang, feats, transcripts, align_opts, name)

    def update_mllt(it: int, x: np.ndarray, pdf_ids: np.ndarray) -> bool:
        nonlocal transform
        if it not in mllt_iters:
            return False
        g, beta = mllt_stats(system.am, x, pdf_ids)
        a = estimate_mllt(g, beta)
        transform = (a @ transform.astype(np.float64)).astype(np.float32)
        feats.apply_transform(transform, splice_context)
        transform_means(system.am, a)
        return True

    run_em(system, lang, feats, transcripts, first.alignments, schedule, align_opts, name,
           before_accumulate=update_mllt)
    system.transform = transform
    final = align_with_system(system, lang, feats.feats, transcripts, align_opts, f"{name} final alignment")
    return system, final.alignments, final.failed
