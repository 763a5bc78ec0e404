"""The parts of a Kaldi lang directory that GMM training needs, as read by `asr_kd.lang.Lang`."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst

from asr_kd.lang.lang import Lang

log = logging.getLogger(__name__)


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
    """The GMM view of a lang directory (`Lang.load` reads and checks it): topology, L.fst, tree roots."""
    lang = Lang.load(lang_dir)
    roots_path = lang.dir / "phones" / "roots.int"
    topo = lang.topo()
    if roots_path.is_file():
        # "shared split 4 5 6" per line: phones that share one tree root
        roots = [[int(x) for x in line.split()[2:]] for line in roots_path.read_text().splitlines() if line.strip()]
    else:
        roots = [[p] for p in topo.phones]
    extra_path = lang.dir / "phones" / "extra_questions.int"
    extra = ([[int(x) for x in line.split()] for line in extra_path.read_text().splitlines() if line.strip()]
             if extra_path.is_file() else [])
    return GmmLang(lang.dir, topo, lang.read_fst("L.fst"), lang.word2id, lang.phone2id, lang.disambig_phones,
                   lang.silence_phones, lang.oov_word, roots, extra)
