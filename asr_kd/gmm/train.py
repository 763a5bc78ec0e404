"""The EM loop shared by monophone and triphone training: realign, accumulate, update, mix up."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from asr_kd.gmm import estimate
from asr_kd.gmm.align import AlignOptions, align_with_system
from asr_kd.gmm.features import GmmFeatures
from asr_kd.gmm.lang_files import GmmLang
from asr_kd.gmm.system import GmmSystem, TransitionArrays

log = logging.getLogger(__name__)


@dataclass
class TrainSchedule:
    """Kaldi's train_mono.sh / train_deltas.sh knobs."""

    num_iters: int = 25
    realign_iters: tuple[int, ...] = (5, 10, 15, 20)
    target_gauss: int = 1000
    max_iter_inc: int = 15
    mixup_seed: int = 0  # the random directions Gaussians split along; training is reproducible per seed
    history: list[dict] = field(default_factory=list)


def gather(feats: GmmFeatures, alignments: dict[str, np.ndarray], arrays: TransitionArrays
           ) -> tuple[np.ndarray, np.ndarray]:
    """All aligned frames stacked (N, D) and their pdf-ids (N,)."""
    ids = sorted(alignments)
    x = np.concatenate([feats.feats[i] for i in ids])
    pdf = np.concatenate([arrays.pdf[alignments[i]] for i in ids])
    return x, pdf


def run_em(system: GmmSystem, lang: GmmLang, feats: GmmFeatures, transcripts: dict[str, list[int]],
           alignments: dict[str, np.ndarray], schedule: TrainSchedule, align_opts: AlignOptions,
           name: str, update_transitions: bool = True,
           before_accumulate: Callable[[int, np.ndarray, np.ndarray], bool] | None = None) -> dict[str, np.ndarray]:
    """Run `schedule.num_iters` EM iterations on `system` in place; returns the last alignments.

    `before_accumulate(iteration, frames, pdf_ids)` may change `feats` (and the model to match,
    e.g. an MLLT update); it returns True when it did, and the frames are gathered again.
    """
    arrays = TransitionArrays.from_model(system.transition_model)
    x, pdf = gather(feats, alignments, arrays)
    start_gauss = system.am.num_gauss
    inc = max(schedule.target_gauss - start_gauss, 0) / max(schedule.max_iter_inc, 1)
    mixup_rng = np.random.default_rng(schedule.mixup_seed)
    for it in range(1, schedule.num_iters + 1):
        if it in schedule.realign_iters:
            result = align_with_system(system, lang, feats.feats, transcripts, align_opts,
                                       f"{name} realignment, iteration {it}")
            if result.alignments:
                alignments = result.alignments
                x, pdf = gather(feats, alignments, arrays)
        if before_accumulate is not None and before_accumulate(it, x, pdf):
            x, pdf = gather(feats, alignments, arrays)
        stats = estimate.accumulate(system.am, x, pdf)
        impr = estimate.update(system.am, stats)
        if update_transitions:
            estimate.update_transitions(system.transition_model, list(alignments.values()))
        if it <= schedule.max_iter_inc:
            target = int(round(start_gauss + inc * it))
            estimate.mix_up(system.am, stats.pdf_occupancy(), target, mixup_rng)
        like = stats.tot_loglike / max(stats.num_frames, 1)
        schedule.history.append({"iter": it, "loglike_per_frame": like, "num_gauss": system.am.num_gauss,
                                 "num_utts": len(alignments)})
        log.info("%s it %d: loglike/frame %.3f (+%.3f), %d Gaussians, %d utterances", name, it, like, impr,
                 system.am.num_gauss, len(alignments))
    return alignments
