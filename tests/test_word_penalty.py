"""The word insertion penalty put into a decoding graph (asr_kd.decode.penalty), on small hand-made FSTs."""

from __future__ import annotations

import kaldifst
import pytest

from asr_kd.decode.penalty import (add_word_ins_penalty, parse_word_ins_penalties, penalised_words,
                                    penalty_beyond_top)
from asr_kd.utils.errors import InputError


def _fst(arcs: list[tuple[int, int, int, int, float]], final: int) -> kaldifst.StdVectorFst:
    fst = kaldifst.StdVectorFst()
    for _ in range(final + 1):
        fst.add_state()
    fst.start = 0
    fst.set_final(final, kaldifst.TropicalWeight(0.0))
    for src, ilabel, olabel, dst, cost in arcs:
        fst.add_arc(src, kaldifst.StdArc(ilabel, olabel, kaldifst.TropicalWeight(cost), dst))
    return fst


def _arcs(fst: kaldifst.StdFst) -> list[tuple[int, int, float]]:
    """(input, output, cost) of every arc, sorted: composition may number the states differently."""
    out = []
    for state in range(fst.num_states):
        it = kaldifst.ArcIterator(fst, state)
        while not it.done:
            a = it.value
            out.append((a.ilabel, a.olabel, round(a.weight.value, 6)))
            it.next()
    return sorted(out)


def _best_path_cost(fst: kaldifst.StdFst) -> tuple[float, list[int]]:
    """Cost and output labels of the shortest path."""
    path = kaldifst.shortest_path(fst)
    state, cost, words = path.start, 0.0, []
    while True:
        it = kaldifst.ArcIterator(path, state)
        if it.done:
            return cost + path.final(state).value, words
        arc = it.value
        cost += arc.weight.value
        words += [arc.olabel] if arc.olabel else []
        state = arc.nextstate


def test_penalty_costs_once_per_word_and_changes_which_path_is_best():
    # Two paths from 0 to 3: two words through an epsilon-output arc (cost 0.6), or no word at all (cost 1.0).
    graph = _fst([(0, 1, 5, 1, 0.3), (1, 2, 0, 2, 0.1), (2, 3, 7, 3, 0.2), (0, 4, 0, 3, 1.0)], final=3)
    words = {0: "<eps>", 5: "HELLO", 7: "WORLD"}
    assert _best_path_cost(graph) == (pytest.approx(0.6), [5, 7])
    penalised = add_word_ins_penalty(graph, words, 0.5)
    # As many states and arcs, each word arc 0.5 dearer, the epsilon-output arcs as they were.
    assert penalised.num_states == graph.num_states
    assert _arcs(penalised) == [(1, 5, 0.8), (2, 0, 0.1), (3, 7, 0.7), (4, 0, 1.0)]
    assert _best_path_cost(penalised) == (pytest.approx(1.0), [])
    # A bonus (a negative penalty) favours the words more.
    assert _best_path_cost(add_word_ins_penalty(graph, words, -0.5)) == (pytest.approx(-0.4), [5, 7])
    # A symbol that is no word (here </s> on an output) passes free, and its path stays.
    marked = {0: "<eps>", 5: "HELLO", 7: "</s>"}
    assert _arcs(add_word_ins_penalty(graph, marked, 0.2)) == [(1, 5, 0.5), (2, 0, 0.1), (3, 7, 0.2), (4, 0, 1.0)]


def test_only_real_words_are_penalised():
    symbols = {0: "<eps>", 1: "<UNK>", 2: "HELLO", 3: "#0", 4: "<s>", 5: "</s>", 6: "#1", 7: "WORLD"}
    assert penalised_words(symbols) == [1, 2, 7]


def test_penalty_values_are_parsed_as_kaldi_names_them():
    assert parse_word_ins_penalties(["0", "0.5", 1, "1.0"]) == ["0", "0.5", "1"]
    assert parse_word_ins_penalties(["-0.5"]) == ["-0.5"]
    for bad in (["x"], [], ["inf"], ["nan"]):
        with pytest.raises(InputError, match="--word-ins-penalties"):
            parse_word_ins_penalties(bad)


def test_the_grid_is_extended_above_its_top_only():
    assert penalty_beyond_top(["0", "0.5", "1"], "1") == "1.5"
    assert penalty_beyond_top(["0", "1", "1.5"], 1.5) == "2"  # the smallest spacing
    assert penalty_beyond_top(["0", "0.5", "1"], "0.5") is None
    assert penalty_beyond_top(["0", "0.5", "1"], "0") is None  # below the grid: bonuses per word, not searched
    assert penalty_beyond_top(["1"], "1") is None  # one penalty has no spacing
