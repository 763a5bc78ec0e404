"""Sentence normalisation and filtering, on real lines from the Debian text packages."""

from __future__ import annotations

import subprocess

import pytest

from asr_kd.data.text import (MAX_WORDS, _kjv_passages, _web_passages, clean_sentences, cmudict_words,
                              normalize_sentence, read_fortunes, read_wordnet, split_sentences)


@pytest.fixture(scope="module")
def vocabulary() -> frozenset[str]:
    return cmudict_words()


def kjv(*refs: str) -> list[str]:
    output = subprocess.run(["bible", "-l0", *refs], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, check=True).stdout
    return list(_kjv_passages(output))


def web(ref: str) -> list[str]:
    output = subprocess.run(["diatheke", "-b", "engWEB2015eb", "-f", "OSIS", "-k", ref],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True).stdout
    return list(_web_passages(output))


def test_kjv_verse_is_upper_cased_without_punctuation_or_verse_number():
    [passage] = kjv("gen1:1")
    assert [normalize_sentence(s) for s in split_sentences(passage)] == [
        "IN THE BEGINNING GOD CREATED THE HEAVEN AND THE EARTH"]


def test_web_words_in_adjacent_markup_stay_apart_and_curly_apostrophes_become_straight():
    [passage] = web("Gen 1:1-2")[:1]
    assert normalize_sentence(passage) == "IN THE BEGINNING GOD CREATED THE HEAVENS AND THE EARTH"
    sentences = [normalize_sentence(s) for s in split_sentences(web("Gen 1:2")[0])]
    assert "AND GOD'S SPIRIT WAS HOVERING OVER THE SURFACE OF THE WATERS" in sentences[1]


def test_hyphens_split_words_and_clause_punctuation_cuts_sentences():
    # Revelation 13:18 (WEB): "... His number is six hundred sixty-six."
    pieces = [normalize_sentence(s) for s in split_sentences(web("Rev 13:18")[0])]
    assert pieces[-1] == "HIS NUMBER IS SIX HUNDRED SIXTY SIX"
    assert pieces[0] is None  # "Here is wisdom." has three words: too short


def test_sentence_with_digits_is_dropped():
    fortunes = list(read_fortunes())
    line = "(1) Avoid fried meats which angry up the blood."  # from fortunes' "wisdom" file
    assert any(line in passage for passage in fortunes)
    assert normalize_sentence(line) is None
    assert normalize_sentence("Avoid fried meats which angry up the blood.") == "AVOID FRIED MEATS WHICH ANGRY UP THE BLOOD"


def test_short_long_and_foreign_sentences_are_dropped():
    [passage] = kjv("john11:35")  # "Jesus wept."
    assert normalize_sentence(passage) is None
    assert normalize_sentence(" ".join(["word"] * (MAX_WORDS + 1))) is None
    assert normalize_sentence(" ".join(["word"] * MAX_WORDS)) is not None
    assert normalize_sentence("the café was closed all day") is None
    assert normalize_sentence("send it to me & you") is None


def test_out_of_vocabulary_word_drops_the_sentence(vocabulary):
    # Isaiah 8:1 (KJV) ends with "Mahershalalhashbaz", which CMUdict lacks.
    [passage] = kjv("isa8:1")
    assert "MAHERSHALALHASHBAZ" not in vocabulary
    assert clean_sentences([("bible-kjv", passage)], vocabulary) == []
    known = passage.replace("Mahershalalhashbaz", "him")
    assert clean_sentences([("bible-kjv", known)], vocabulary) == [("bible-kjv", normalize_sentence(known))]


def test_duplicates_are_kept_once_with_their_first_source(vocabulary):
    [passage] = kjv("gen1:1")
    kept = clean_sentences([("bible-kjv", passage), ("fortunes", passage.upper())], vocabulary)
    assert kept == [("bible-kjv", "IN THE BEGINNING GOD CREATED THE HEAVEN AND THE EARTH")]


def test_wordnet_gives_definitions_and_quoted_examples(vocabulary):
    glosses = set()
    for gloss in read_wordnet():
        glosses.add(gloss)
        if len(glosses) > 2000:
            break
    # data.noun's second synset is "entity": "that which is perceived or known or inferred to have
    # its own distinct existence (living or nonliving)"
    assert "that which is perceived or known or inferred to have its own distinct existence (living or nonliving)" in glosses
    assert all('"' not in g for g in glosses)
    assert len(clean_sentences((("wordnet", g) for g in glosses), vocabulary)) > 500
