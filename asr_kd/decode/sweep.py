"""LM-weight sweep by re-decoding at acoustic scales 1/lmwt, and writing hypotheses + WER.

kaldi_hmm_gmm's lattice decoder hands back only the best path (no lattice to rescore), so the
sweep Kaldi does with lattice-scale on one lattice is done here by decoding once per weight.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from asr_kd.decode.decoder import DecodeOptions, DecodeResult, decode_utterances
from asr_kd.score.wer import compute_wer, weight_beyond_edge
from asr_kd.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


def word_error_rate(refs: Mapping[str, str], hyps: Mapping[str, str]) -> dict[str, float]:
    """Corpus WER (a fraction, not percent) of hypotheses against references, with error counts."""
    result = compute_wer(refs, hyps)
    return {"wer": result.wer / 100, "substitutions": result.substitutions, "deletions": result.deletions,
            "insertions": result.insertions, "ref_words": result.num_ref_words, "utterances": len(result.utterances)}


def _best_lmwt(results: Mapping[str, dict]) -> str:
    """The weight with the lowest WER; ties go to the smaller weight, as in `select_lm_weight`."""
    return min(results, key=lambda k: (results[k]["wer"], float(k)))


def sweep_lm_weights(graph: kaldifst.StdVectorFst, transition_model: khg.TransitionModel,
                     inputs: Mapping[str, np.ndarray], refs: Mapping[str, str], id_to_word: Mapping[int, str],
                     lm_weights: Sequence[float], opts: DecodeOptions, out_dir: str | Path,
                     am: khg.AmDiagGmm | None = None, extend: int = 0) -> dict:
    """Decode at acoustic scale 1/lmwt for each LM weight; write `hyp_lmwt<w>.txt` and `wer.json`.

    With `extend` > 0, up to that many more weights past the sweep's edge while the best is on it.
    """
    out_dir = Path(out_dir)
    results: dict[str, dict] = {}
    pending = list(lm_weights)
    while pending:
        lmwt = pending.pop(0)
        res: DecodeResult = decode_utterances(graph, transition_model, inputs, replace(opts, acoustic_scale=1.0 / lmwt),
                                              am=am, desc=f"decode lmwt {lmwt:g}")
        hyps = {u: " ".join(w) for u, w in res.words(id_to_word).items()}
        atomic_write_text(out_dir / f"hyp_lmwt{lmwt:g}.txt", "".join(f"{u} {hyps[u]}\n" for u in sorted(hyps)))
        score = word_error_rate(refs, hyps)
        score.update(rtf=res.rtf, wall_seconds=round(res.wall_seconds, 2), audio_seconds=round(res.audio_seconds, 2),
                     num_workers=res.num_workers, failed=res.failed)
        results[f"{lmwt:g}"] = score
        log.info("lmwt %g: WER %.2f%% (%d words), RTF %.4f with %d workers", lmwt, 100 * score["wer"],
                 score["ref_words"], res.rtf, res.num_workers)
        if not pending and extend > 0:
            extra = weight_beyond_edge(list(results), _best_lmwt(results))
            if extra is not None:
                log.info("best LM weight %s is at the sweep's edge: trying %s", _best_lmwt(results), extra)
                pending.append(float(extra))
                extend -= 1
    best = _best_lmwt(results)
    summary = {"best_lmwt": float(best), "best_wer": results[best]["wer"], "by_lmwt": results,
               "options": {k: v for k, v in vars(opts).items() if k != "acoustic_scale"}}
    atomic_write_json(out_dir / "wer.json", summary)
    return summary
