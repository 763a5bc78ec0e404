"""The lexicon transducer L (phones -> words) with optional silence between words."""

from __future__ import annotations

import math
from typing import Sequence

import kaldifst


def make_lexicon_fst(
    prons: Sequence[tuple[int, Sequence[int]]],
    sil_phone: int,
    sil_prob: float = 0.5,
    word_disambig: tuple[int, int] | None = None,
) -> kaldifst.StdVectorFst:
    """L from (word id, phone ids) pairs; `sil_phone` may follow any word with probability `sil_prob`.

    The layout is Kaldi's make_lexicon_fst: a start state that may emit silence before the first
    word, a loop state where words start and end, and a silence state each word may end in
    (emitting `sil_phone` on its way back to the loop state). The word label sits on a word's
    first arc. `word_disambig=(phone #0, word #0)` adds the #0:#0 self-loop at the loop state so
    G's back-off symbols pass through composition (L_disambig).
    """
    if not 0.0 <= sil_prob < 1.0:
        raise ValueError(f"sil_prob must be in [0, 1), got {sil_prob}")
    fst = kaldifst.StdVectorFst()
    start = fst.add_state()
    fst.start = start
    if sil_prob > 0:
        loop = fst.add_state()
        sil = fst.add_state()
        sil_cost = -math.log(sil_prob)
        no_sil_cost = -math.log(1.0 - sil_prob)
        fst.add_arc(start, kaldifst.StdArc(0, 0, no_sil_cost, loop))
        fst.add_arc(start, kaldifst.StdArc(0, 0, sil_cost, sil))
        fst.add_arc(sil, kaldifst.StdArc(sil_phone, 0, 0.0, loop))
    else:
        loop = start
    fst.set_final(loop, 0.0)

    for word, phones in prons:
        if not phones:
            raise ValueError(f"word id {word} has an empty pronunciation")
        src = loop
        for i, phone in enumerate(phones[:-1]):
            dst = fst.add_state()
            fst.add_arc(src, kaldifst.StdArc(phone, word if i == 0 else 0, 0.0, dst))
            src = dst
        last_olabel = word if len(phones) == 1 else 0
        if sil_prob > 0:
            fst.add_arc(src, kaldifst.StdArc(phones[-1], last_olabel, no_sil_cost, loop))
            fst.add_arc(src, kaldifst.StdArc(phones[-1], last_olabel, sil_cost, sil))
        else:
            fst.add_arc(src, kaldifst.StdArc(phones[-1], last_olabel, 0.0, loop))

    if word_disambig is not None:
        fst.add_arc(loop, kaldifst.StdArc(word_disambig[0], word_disambig[1], 0.0, loop))
    kaldifst.arcsort(fst, sort_type="olabel")
    return fst
