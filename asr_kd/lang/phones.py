"""Phone inventory, lexicon disambiguation symbols and Kaldi-style symbol tables."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from asr_kd.lang.lexicon import strip_stress
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_text

SIL = "SIL"
SPN = "SPN"
UNK = "<UNK>"
SILENCE_PHONES = (SIL, SPN)
# Kaldi's word-position suffixes: Begin, End, Internal, Singleton (a one-phone word).
POSITIONS = ("_B", "_E", "_I", "_S")
_BOUNDARY_NAMES = {"_B": "begin", "_E": "end", "_I": "internal", "_S": "singleton"}


def with_positions(pron: tuple[str, ...]) -> tuple[str, ...]:
    """`K AE T` -> `K_B AE_I T_E`; a one-phone word gets `_S` (Kaldi's position-dependent phones)."""
    if len(pron) == 1:
        return (pron[0] + "_S",)
    return (pron[0] + "_B", *(p + "_I" for p in pron[1:-1]), pron[-1] + "_E")


def silence_phones(position_dependent: bool) -> list[str]:
    """SIL and SPN, each also with the four position suffixes when `position_dependent` (as Kaldi)."""
    if not position_dependent:
        return list(SILENCE_PHONES)
    return [v for p in SILENCE_PHONES for v in (p, *(p + s for s in POSITIONS))]


def base_phone(phone: str) -> str:
    """`AH1_B` -> `AH`: the phone without its word position and stress."""
    if phone[-2:] in POSITIONS:
        phone = phone[:-2]
    return strip_stress(phone)


def word_boundary_lines(phones: Sequence[str], silence: Sequence[str]) -> list[str]:
    """Kaldi's phones/word_boundary.txt: `<phone> begin|end|internal|singleton|nonword`."""
    return [f"{p} nonword" if p in silence else f"{p} {_BOUNDARY_NAMES[p[-2:]]}" for p in phones]


def add_disambig(prons: Sequence[tuple[str, ...]]) -> tuple[list[tuple[str, ...]], int]:
    """Append `#n` to pronunciations that repeat or are a prefix of another (Kaldi's add_lex_disambig).

    Returns the disambiguated pronunciations (same order) and the largest `n` used (0 if none).
    Without them L would not be determinizable: a word whose phones are a prefix of another's,
    or two homophones, cannot be told apart until after the last phone.
    """
    count = Counter(prons)
    prefixes = {p[:i] for p in prons for i in range(1, len(p))}
    next_index: dict[tuple[str, ...], int] = {}
    out: list[tuple[str, ...]] = []
    max_used = 0
    for pron in prons:
        if count[pron] > 1 or pron in prefixes:
            n = next_index.get(pron, 1)
            next_index[pron] = n + 1
            max_used = max(max_used, n)
            out.append(pron + (f"#{n}",))
        else:
            out.append(pron)
    return out, max_used


def phone_sets(silence: Sequence[str], nonsilence: Sequence[str]) -> list[list[str]]:
    """Phones grouped by base phone (stress and position variants together), silence first."""
    groups: dict[str, list[str]] = {}
    for p in [*silence, *sorted(nonsilence)]:
        groups.setdefault(base_phone(p), []).append(p)
    return list(groups.values())


def write_symbol_table(symbols: Sequence[str], path: str | os.PathLike) -> None:
    """Write `symbol id` lines, ids 0, 1, 2, ... in the given order."""
    atomic_write_text(path, "".join(f"{s} {i}\n" for i, s in enumerate(symbols)))


def read_symbol_table(path: str | os.PathLike) -> dict[str, int]:
    """Read a `symbol id` file (Kaldi words.txt / phones.txt)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: symbol table not found")
    table: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[1].isdigit():
                raise InputError(f"{path}:{lineno}: expected 'symbol integer-id', got {line.strip()!r}")
            if fields[0] in table:
                raise InputError(f"{path}:{lineno}: symbol {fields[0]!r} appears twice")
            table[fields[0]] = int(fields[1])
    return table


def write_phone_list(dir_: Path, name: str, phones: Sequence[str], phone2id: Mapping[str, int]) -> None:
    """Write `phones/<name>.{txt,int,csl}` for a list of phones (Kaldi's three views of one set)."""
    ids = [phone2id[p] for p in phones]
    atomic_write_text(dir_ / f"{name}.txt", "".join(f"{p}\n" for p in phones))
    atomic_write_text(dir_ / f"{name}.int", "".join(f"{i}\n" for i in ids))
    atomic_write_text(dir_ / f"{name}.csl", ":".join(map(str, ids)) + "\n")


def write_phone_groups(dir_: Path, name: str, groups: Sequence[Sequence[str]], phone2id: Mapping[str, int],
                       prefix: str = "") -> None:
    """Write `phones/<name>.{txt,int}`, one group of phones per line (sets, roots, questions)."""
    atomic_write_text(dir_ / f"{name}.txt", "".join(prefix + " ".join(g) + "\n" for g in groups))
    atomic_write_text(
        dir_ / f"{name}.int",
        "".join(prefix + " ".join(str(phone2id[p]) for p in g) + "\n" for g in groups),
    )
