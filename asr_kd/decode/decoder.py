"""Hybrid decoding: any per-frame acoustic score matrix (or a GMM) against an HCLG graph.

Scores reach Kaldi's decoders through `DecodableCtc`, which returns `M[t, ilabel - 1]`; HCLG's input
labels are transition-ids, so the matrix handed over is `scale * scores[:, tid2pdf[1:]]` (one
column per transition-id). GMMs go through `DecodableAmDiagGmmScaled`. Utterances are decoded in
parallel by forked workers that share the graph copy-on-write.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
from tqdm import tqdm

from asr_kd.utils.errors import InputError

log = logging.getLogger(__name__)

FRAME_SHIFT = 0.01


@dataclass
class DecodeOptions:
    """Kaldi decoder options (names as in gmm-latgen-faster / decode.sh)."""

    beam: float = 13.0
    max_active: int = 7000
    min_active: int = 200
    lattice_beam: float = 6.0
    acoustic_scale: float = 0.1
    decoder: str = "lattice-faster"  # or "faster"
    allow_partial: bool = True
    num_workers: int = 2


@dataclass
class DecodeResult:
    """Word-id hypotheses per utterance and the decoding speed."""

    hyps: dict[str, list[int]]
    failed: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    audio_seconds: float = 0.0
    num_workers: int = 1

    @property
    def rtf(self) -> float:
        """Wall-clock seconds per second of audio (all workers together)."""
        return self.wall_seconds / max(self.audio_seconds, 1e-9)

    def words(self, id_to_word: Mapping[int, str]) -> dict[str, list[str]]:
        """Hypotheses as word strings."""
        return {utt: [id_to_word[w] for w in ids] for utt, ids in self.hyps.items()}


def load_graph(path: str | Path) -> kaldifst.StdVectorFst:
    """Read HCLG.fst (kaldifst/OpenFst binary)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"decoding graph {path} does not exist (build it with make_hclg)")
    return kaldifst.StdVectorFst.read(str(path))


def transition_columns(transition_model: khg.TransitionModel) -> np.ndarray:
    """pdf-id of every transition-id 1..N: the columns `DecodableCtc` needs, in order."""
    return np.asarray(transition_model.transition_id_to_pdf_array(), dtype=np.int64)[1:]


def matrix_decodable(scores: np.ndarray, columns: np.ndarray, acoustic_scale: float) -> khg.DecodableCtc:
    """Decodable over (frames, num_pdfs) log-likelihood-like scores (e.g. log posterior - log prior)."""
    if scores.ndim != 2 or scores.shape[1] <= columns.max():
        raise InputError(f"score matrix of shape {scores.shape} does not cover {columns.max() + 1} pdfs")
    return khg.DecodableCtc(np.ascontiguousarray(acoustic_scale * scores[:, columns], dtype=np.float32))


def _make_decoder(graph, opts: DecodeOptions):
    if opts.decoder == "faster":
        return khg.FasterDecoder(graph, khg.FasterDecoderOptions(beam=opts.beam, max_active=opts.max_active,
                                                                 min_active=opts.min_active))
    if opts.decoder == "lattice-faster":
        return khg.LatticeFasterDecoder(graph, khg.LatticeFasterDecoderConfig(
            beam=opts.beam, max_active=opts.max_active, min_active=opts.min_active, lattice_beam=opts.lattice_beam))
    raise InputError(f"unknown decoder {opts.decoder!r} (use lattice-faster or faster)")


def decode_one(decoder, decodable, transition_model: khg.TransitionModel, utt: str,
               opts: DecodeOptions) -> list[int] | None:
    """Best word sequence of one utterance (word ids), None when the search failed.

    Without a final state at the end, the best partial path is kept if `opts.allow_partial`
    (Kaldi's --allow-partial; Kaldi logs a warning naming the utterance).
    """
    if opts.decoder == "faster":
        decoder.decode(decodable)
        final = decoder.reached_final()
        if not final and not opts.allow_partial:
            return None
        ok, lattice = decoder.get_best_path(use_final_probs=final)
        if not ok:
            return None
        ok, _, words, _ = kaldifst.get_linear_symbol_sequence(lattice)
        return list(words) if ok else None
    ok, _, words, _ = khg.decode_utterance_lattice_faster(decoder, decodable, transition_model, utt, opts.allow_partial)
    return list(words) if ok else None


_SHARED: dict = {}


def _worker(utt: str) -> tuple[str, list[int] | None, int]:
    s = _SHARED
    # A decoder per utterance (10 us to make on the mini preset's 90 MB HCLG): one reused across
    # utterances keeps state from them (most likely its token hash, which keeps the size it grew to)
    # that decides which of two equal-cost tokens survives, so an utterance's words depended on what
    # its worker had decoded before, and with several workers on timing (tests/test_decode_nnet.py).
    decoder = _make_decoder(s["graph"], s["opts"])
    feats = s["inputs"][utt]
    if s["am"] is not None:
        decodable = khg.DecodableAmDiagGmmScaled(am=s["am"], tm=s["tm"], feats=feats, scale=s["opts"].acoustic_scale)
    else:
        decodable = matrix_decodable(feats, s["columns"], s["opts"].acoustic_scale)
    return utt, decode_one(decoder, decodable, s["tm"], utt, s["opts"]), feats.shape[0]


def decode_utterances(graph: kaldifst.StdVectorFst, transition_model: khg.TransitionModel,
                      inputs: Mapping[str, np.ndarray], opts: DecodeOptions | None = None,
                      am: khg.AmDiagGmm | None = None, desc: str = "decode") -> DecodeResult:
    """Decode every utterance of `inputs`.

    With `am`, `inputs` are GMM features (frames, dim); without, they are acoustic scores
    (frames, num_pdfs), e.g. neural log-posteriors minus log priors.
    """
    opts = opts or DecodeOptions()
    _SHARED.clear()
    _SHARED.update(graph=graph, tm=transition_model, am=am, inputs=inputs, opts=opts,
                   columns=transition_columns(transition_model))
    utts = list(inputs)
    result = DecodeResult({}, num_workers=opts.num_workers)
    start = time.perf_counter()
    try:
        if opts.num_workers > 1 and len(utts) > 1:
            with multiprocessing.get_context("fork").Pool(opts.num_workers) as pool:
                chunk = max(1, min(16, len(utts) // (8 * opts.num_workers)))
                _collect(pool.imap(_worker, utts, chunksize=chunk), result, len(utts), desc)
        else:
            _collect(map(_worker, utts), result, len(utts), desc)
    finally:
        _SHARED.clear()
    result.wall_seconds = time.perf_counter() - start
    if result.failed:
        log.warning("%s: %d utterance(s) produced no output: %s", desc, len(result.failed),
                    ", ".join(result.failed[:20]))
    log.info("%s: %d utterances, %.1f s of audio in %.1f s wall with %d workers: RTF %.4f", desc, len(utts),
             result.audio_seconds, result.wall_seconds, opts.num_workers, result.rtf)
    return result


def _collect(outputs, result: DecodeResult, total: int, desc: str) -> None:
    for utt, words, frames in tqdm(outputs, total=total, desc=desc, leave=False):
        result.audio_seconds += frames * FRAME_SHIFT
        if words is None:
            result.failed.append(utt)
        result.hyps[utt] = words or []
