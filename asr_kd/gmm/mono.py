"""Monophone training from a flat start (Kaldi's train_mono.sh)."""

from __future__ import annotations

import logging

import kaldi_hmm_gmm as khg
import numpy as np

from asr_kd.gmm import estimate
from asr_kd.gmm.align import AlignOptions, align_utterances, align_with_system, warn_failed
from asr_kd.gmm.features import GmmFeatures
from asr_kd.gmm.lang_files import GmmLang
from asr_kd.gmm.system import GmmSystem, TransitionArrays
from asr_kd.gmm.train import TrainSchedule, gather, run_em
from asr_kd.utils.errors import InputError

log = logging.getLogger(__name__)


def mono_schedule(num_iters: int = 25, target_gauss: int = 1000) -> TrainSchedule:
    """Realign often early (the flat-start model moves fast), then every few iterations."""
    # The last iteration is never a realignment: the final alignment with the new model follows.
    realign = tuple(i for i in (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 21, 24, 28, 32, 36) if i < num_iters)
    return TrainSchedule(num_iters=num_iters, realign_iters=realign, target_gauss=target_gauss,
                         max_iter_inc=max(1, int(num_iters * 0.75)))


def init_mono(lang: GmmLang, feats: GmmFeatures) -> GmmSystem:
    """Monophone tree, transition model and one global-mean/variance Gaussian per pdf."""
    topo = lang.topo
    tree = khg.monophone_context_dependency(topo.phones, topo.get_phone_to_num_pdf_classes())
    tm = khg.TransitionModel(tree, topo)
    sample = np.concatenate(list(feats.feats.values()))
    return GmmSystem(tree, tm, estimate.init_flat_am(tm.num_pdfs, sample))


def shortest_utterances(feats: GmmFeatures, transcripts: dict[str, list[int]], num_utts: int | None
                        ) -> dict[str, list[int]]:
    """The `num_utts` shortest utterances (Kaldi's subset_data_dir.sh --shortest), all if None."""
    if num_utts is None or num_utts >= len(transcripts):
        return transcripts
    ids = sorted(transcripts, key=lambda u: (feats.feats[u].shape[0], u))[:num_utts]
    return {u: transcripts[u] for u in ids}


def train_mono(lang: GmmLang, feats: GmmFeatures, transcripts: dict[str, list[int]],
               schedule: TrainSchedule | None = None, align_opts: AlignOptions | None = None,
               num_utts: int | None = None) -> tuple[GmmSystem, dict[str, np.ndarray], list[str]]:
    """Flat start, equal alignment, EM with realignment and mixing up.

    Training uses the `num_utts` shortest utterances (flat starts work best on short ones, and it
    keeps the many early realignments cheap); the final model then aligns all of them. Returns
    the system, that alignment, and the ids of utterances that could not be aligned.
    """
    schedule = schedule or mono_schedule()
    align_opts = align_opts or AlignOptions()
    system = init_mono(lang, feats)
    subset = shortest_utterances(feats, transcripts, num_utts)
    log.info("mono: training on %d of %d utterances", len(subset), len(transcripts))
    equal = align_utterances(system.transition_model, system.tree, None, lang, feats.feats, subset,
                             align_opts, desc="mono equal-align")
    warn_failed(equal, "mono equal alignment (utterance shorter than its transcript's HMM states)")
    if not equal.alignments:
        raise InputError("monophone training: no utterance could be equal-aligned")
    # Iteration 0 (Kaldi's 0.mdl -> 1.mdl): GMMs from the equal alignment, no transition update.
    arrays = TransitionArrays.from_model(system.transition_model)
    x, pdf = gather(feats, equal.alignments, arrays)
    estimate.update(system.am, estimate.accumulate(system.am, x, pdf))
    run_em(system, lang, feats, subset, equal.alignments, schedule, align_opts, "mono")
    final = align_with_system(system, lang, feats.feats, transcripts, align_opts, "mono final alignment")
    return system, final.alignments, final.failed
