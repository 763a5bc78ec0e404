"""Forced alignment (Viterbi and equal) of utterances to transition-ids, parallel over utterances.

Each utterance's training graph comes from Kaldi's TrainingGraphCompiler (H o C o L o transcript)
compiled without transition probabilities; they are added at alignment time with Kaldi's
align_si.sh scales (transition 1.0, self-loop 0.1, acoustic 0.1).
"""

from __future__ import annotations

import logging
import multiprocessing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
from tqdm import tqdm

from asr_kd.gmm.lang_files import GmmLang

if TYPE_CHECKING:
    from asr_kd.gmm.system import GmmSystem

log = logging.getLogger(__name__)

ACOUSTIC_SCALE = 0.1
TRANSITION_SCALE = 1.0
SELF_LOOP_SCALE = 0.1


@dataclass
class AlignOptions:
    """Beam settings of Kaldi's gmm-align-compiled."""

    beam: float = 10.0
    retry_beam: float = 40.0
    acoustic_scale: float = ACOUSTIC_SCALE
    num_workers: int = 2


@dataclass
class AlignResult:
    """Alignments (transition-ids per frame) of the utterances that aligned, and those that did not."""

    alignments: dict[str, np.ndarray]
    failed: list[str] = field(default_factory=list)
    tot_loglike: float = 0.0
    num_frames: int = 0

    def loglike_per_frame(self) -> float:
        return self.tot_loglike / max(self.num_frames, 1)


class GraphCompiler:
    """Training graphs (transition-id acceptors with word outputs) for transcripts."""

    def __init__(self, transition_model: khg.TransitionModel, tree: khg.ContextDependency, lang: GmmLang):
        self.transition_model = transition_model
        opts = khg.TrainingGraphCompilerOptions(transition_scale=0.0, self_loop_scale=0.0)
        self._compiler = khg.TrainingGraphCompiler(transition_model, tree, lang.lexicon_fst, lang.disambig, opts)

    def compile(self, word_ids: list[int], with_transition_probs: bool = True) -> kaldifst.StdVectorFst:
        """The graph of one transcript."""
        graph = self._compiler.compile_graph_from_text(word_ids)
        if with_transition_probs:
            khg.add_transition_probs(trans_model=self.transition_model, transition_scale=TRANSITION_SCALE,
                                     self_loop_scale=SELF_LOOP_SCALE, fst=graph)
        return graph


def align_one(compiler: GraphCompiler, am: khg.AmDiagGmm, feats: np.ndarray, word_ids: list[int], utt: str,
              opts: AlignOptions) -> tuple[np.ndarray | None, float]:
    """Viterbi alignment of one utterance: (transition-ids or None on failure, log-likelihood)."""
    graph = compiler.compile(word_ids)
    decodable = khg.DecodableAmDiagGmmScaled(am=am, tm=compiler.transition_model, feats=feats,
                                             scale=opts.acoustic_scale)
    config = khg.AlignConfig(beam=opts.beam, retry_beam=opts.retry_beam)
    _, num_error, _, tot_like, _, alignment, _ = khg.align_utterance_wrapper(
        config=config, utt=utt, acoustic_scale=opts.acoustic_scale, fst=graph, decodable=decodable,
        num_done=0, num_error=0, num_retried=0, tot_like=0.0, frame_count=0)
    if num_error or len(alignment) != feats.shape[0]:
        return None, 0.0
    return np.asarray(alignment, dtype=np.int32), float(tot_like)


def equal_align_one(compiler: GraphCompiler, num_frames: int, word_ids: list[int],
                    seed: int) -> np.ndarray | None:
    """A random path of exactly `num_frames` through the training graph (Kaldi's align-equal-compiled)."""
    graph = compiler.compile(word_ids, with_transition_probs=False)
    ok, path = kaldifst.equal_align(graph, num_frames, seed)
    if not ok:
        return None
    ok, tids, _, _ = kaldifst.get_linear_symbol_sequence(path)
    if not ok or len(tids) != num_frames:
        return None
    return np.asarray(tids, dtype=np.int32)


# State shared with forked workers: set just before the pool starts, inherited copy-on-write, so
# features and models are never pickled per task.
_SHARED: dict = {}


def _worker(item: tuple[int, str]) -> tuple[str, np.ndarray | None, float]:
    index, utt = item
    s = _SHARED
    if "compiler" not in s:
        s["compiler"] = GraphCompiler(s["transition_model"], s["tree"], s["lang"])
    feats = s["feats"][utt]
    words = s["transcripts"][utt]
    if s["am"] is None:
        return utt, equal_align_one(s["compiler"], feats.shape[0], words, seed=index), 0.0
    ali, like = align_one(s["compiler"], s["am"], feats, words, utt, s["opts"])
    return utt, ali, like


def align_utterances(transition_model: khg.TransitionModel, tree: khg.ContextDependency,
                     am: khg.AmDiagGmm | None, lang: GmmLang, feats: dict[str, np.ndarray],
                     transcripts: dict[str, list[int]], opts: AlignOptions | None = None,
                     utt_ids: Iterable[str] | None = None, desc: str = "align") -> AlignResult:
    """Align every utterance (equal alignment when `am` is None); failures are listed, not raised."""
    opts = opts or AlignOptions()
    ids = list(utt_ids if utt_ids is not None else transcripts)
    _SHARED.clear()
    _SHARED.update(transition_model=transition_model, tree=tree, am=am, lang=lang, feats=feats,
                   transcripts=transcripts, opts=opts)
    result = AlignResult({})
    items = list(enumerate(ids))
    try:
        if opts.num_workers > 1 and len(items) > 1:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(opts.num_workers) as pool:
                outputs = pool.imap(_worker, items, chunksize=max(1, min(64, len(items) // (8 * opts.num_workers))))
                _collect(outputs, result, len(items), desc)
        else:
            _collect(map(_worker, items), result, len(items), desc)
    finally:
        _SHARED.clear()
    return result


def _collect(outputs, result: AlignResult, total: int, desc: str) -> None:
    for utt, ali, like in tqdm(outputs, total=total, desc=desc, leave=False):
        if ali is None:
            result.failed.append(utt)
        else:
            result.alignments[utt] = ali
            result.tot_loglike += like
            result.num_frames += len(ali)


def warn_failed(result: AlignResult, what: str) -> None:
    """Counted warning naming (up to 20 of) the utterances that could not be aligned."""
    if result.failed:
        shown = ", ".join(result.failed[:20]) + (" ..." if len(result.failed) > 20 else "")
        log.warning("%s: %d utterance(s) could not be aligned and are excluded: %s", what, len(result.failed), shown)


def align_with_system(system: GmmSystem, lang: GmmLang, feats: dict[str, np.ndarray],
                      transcripts: dict[str, list[int]], opts: AlignOptions, what: str) -> AlignResult:
    """Viterbi-align `transcripts` with `system`'s tree and GMMs; warn (counted) about the failures."""
    result = align_utterances(system.transition_model, system.tree, system.am, lang, feats, transcripts, opts,
                              desc=what)
    warn_failed(result, what)
    return result
