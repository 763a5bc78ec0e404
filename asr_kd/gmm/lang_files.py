"""The parts of a Kaldi lang directory that GMM training needs, read straight from its files."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst

from asr_kd.utils.errors import InputError

log = logging.getLogger(__name__)


def read_symbols(path: Path) -> dict[str, int]:
    """A Kaldi symbol table ("symbol id" per line)."""
    if not path.is_file():
        raise InputError(f"symbol table {path} does not exist")
    table = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"{path}:{n}: expected 'symbol id', got {line!r}")
        table[parts[0]] = int(parts[1])
    return table


def _read_ints(path: Path) -> list[int]:
    if not path.is_file():
        raise InputError(f"{path} does not exist (is this a Kaldi lang directory?)")
    return [int(x) for x in path.read_text().split()]


@dataclass
class GmmLang:
    """Topology, lexicon FST and symbol tables of a lang directory."""

    lang_dir: Path
    topo: khg.HmmTopology
    lexicon_fst: kaldifst.StdVectorFst
    words: dict[str, int]
    phones: dict[str, int]
    disambig: list[int]
    silence: list[int]
    oov_word: str
    roots: list[list[int]] = field(default_factory=list)
    extra_questions: list[list[int]] = field(default_factory=list)
    oov_counts: Counter = field(default_factory=Counter)

    @property
    def id_to_word(self) -> dict[int, str]:
        return {i: w for w, i in self.words.items()}

    @property
    def id_to_phone(self) -> dict[int, str]:
        return {i: p for p, i in self.phones.items()}

    def word_ids(self, text: str) -> list[int]:
        """Transcript -> word ids; unknown words become the OOV word (counted in `oov_counts`)."""
        ids = []
        oov_id = self.words[self.oov_word]
        for w in text.split():
            wid = self.words.get(w)
            if wid is None:
                self.oov_counts[w] += 1
                wid = oov_id
            ids.append(wid)
        return ids

    def report_oovs(self, what: str) -> None:
        """Log a counted warning for the OOV words met so far, then forget them."""
        if self.oov_counts:
            total = sum(self.oov_counts.values())
            common = ", ".join(f"{w} ({c})" for w, c in self.oov_counts.most_common(10))
            log.warning("%s: %d OOV tokens (%d types) mapped to %s; most common: %s", what, total,
                        len(self.oov_counts), self.oov_word, common)
            self.oov_counts.clear()


def load_gmm_lang(lang_dir: str | Path) -> GmmLang:
    """Read topo, L.fst, words/phones tables, disambig and silence phones, the OOV word."""
    lang_dir = Path(lang_dir)
    if not lang_dir.is_dir():
        raise InputError(f"lang directory {lang_dir} does not exist")
    topo_path = lang_dir / "topo"
    if not topo_path.is_file():
        raise InputError(f"{topo_path} does not exist")
    topo = khg.HmmTopology()
    topo.read(topo_path.read_text())
    l_path = lang_dir / "L.fst"
    if not l_path.is_file():
        raise InputError(f"{l_path} does not exist")
    lexicon_fst = kaldifst.StdVectorFst.read(str(l_path))
    words = read_symbols(lang_dir / "words.txt")
    phones = read_symbols(lang_dir / "phones.txt")
    oov_path = lang_dir / "oov.txt"
    oov_word = oov_path.read_text().strip() if oov_path.is_file() else "<UNK>"
    if oov_word not in words:
        raise InputError(f"{lang_dir}: OOV word {oov_word!r} is not in words.txt")
    roots_path = lang_dir / "phones" / "roots.int"
    if roots_path.is_file():
        # "shared split 4 5 6" per line: phones that share one tree root
        roots = [[int(x) for x in line.split()[2:]] for line in roots_path.read_text().splitlines() if line.strip()]
    else:
        roots = [[p] for p in topo.phones]
    extra_path = lang_dir / "phones" / "extra_questions.int"
    extra = ([[int(x) for x in line.split()] for line in extra_path.read_text().splitlines() if line.strip()]
             if extra_path.is_file() else [])
    return GmmLang(lang_dir, topo, lexicon_fst, words, phones, _read_ints(lang_dir / "phones" / "disambig.int"),
                   _read_ints(lang_dir / "phones" / "silence.int"), oov_word, roots, extra)
