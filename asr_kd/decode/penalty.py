"""Word insertion penalty in the decoding graph: Kaldi's `lattice-add-penalty` for a search that keeps best paths.

Kaldi's score.sh scales each lattice by 1/LMWT, adds `--word-ins-penalty` to every word and takes the best
path, for each (LM weight, penalty) pair. kaldi_hmm_gmm's decoders hand back the best path only, so the
penalty goes into HCLG before the search instead: the graph is composed with a one-state transducer that
maps every word to itself at cost `penalty`. Each path's cost grows by `penalty` times its word count, as in
Kaldi (the graph cost is not scaled by the acoustic scale, so the penalty is in the same units), and the
graph keeps its states and arcs.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import kaldifst

from asr_kd.score.wer import weight_beyond_edge
from asr_kd.utils.errors import InputError


def parse_word_ins_penalties(values: Sequence[str | float]) -> list[str]:
    """--word-ins-penalties as the strings used in directory names ('0', '0.5'), validated, duplicates dropped."""
    text = " ".join(map(str, values))
    try:
        penalties = [float(p) for p in values]
    except ValueError as err:
        raise InputError(f"--word-ins-penalties must be numbers separated by spaces: {text!r}") from err
    if not penalties or not all(math.isfinite(p) for p in penalties):
        raise InputError(f"--word-ins-penalties must be finite numbers, got {text!r}")
    return list(dict.fromkeys(f"{p:g}" for p in penalties))


def penalty_beyond_top(penalties: Sequence[str | float], best: str | float) -> str | None:
    """The penalty one step (the grid's smallest spacing) above the grid's top when `best` is that top, else None.

    Only upwards: below the grid lie smaller penalties and then bonuses per word, which Kaldi's grid (0 0.5 1)
    does not search either. A grid of one penalty has no spacing and is not extended.
    """
    if float(best) != max(float(p) for p in penalties):
        return None
    return weight_beyond_edge(penalties, best)  # the LM weights' step past an edge, at the top edge


def penalised_words(id_to_word: Mapping[int, str]) -> list[int]:
    """The ids a penalty applies to: every word but <eps>, <s>, </s> and the disambiguation symbols (#0 ...)."""
    return sorted(i for i, w in id_to_word.items() if i != 0 and w not in ("<s>", "</s>") and not w.startswith("#"))


def add_word_ins_penalty(graph: kaldifst.StdFst, id_to_word: Mapping[int, str], penalty: float) -> kaldifst.StdFst:
    """`graph` with `penalty` added once for every word of `penalised_words(id_to_word)` on its output side.

    `id_to_word` is the graph's output symbol table (its words.txt): each of its other symbols passes at no
    cost, and an output label missing from it would end its paths, so it must cover the graph's outputs.
    """
    words = kaldifst.StdVectorFst()
    state = words.add_state()
    words.start = state
    words.set_final(state, kaldifst.TropicalWeight(0.0))
    paid = set(penalised_words(id_to_word))
    for word in sorted(i for i in id_to_word if i != 0):  # input-label sorted: composition matches on this side
        cost = kaldifst.TropicalWeight(float(penalty) if word in paid else 0.0)
        words.add_arc(state, kaldifst.StdArc(word, word, cost, state))
    return kaldifst.compose(graph, words, match_side="right", connect=False)
