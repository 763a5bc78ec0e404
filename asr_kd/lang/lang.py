"""Build and load a Kaldi-layout lang directory (words, phones, topology, L, L_disambig)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Mapping

from asr_kd.lang.lexicon import RESERVED_WORDS, Lexicon, cmudict_lexicon, read_lexicon, select_words, write_lexicon
from asr_kd.lang.lexicon_fst import make_lexicon_fst
from asr_kd.lang.phones import (
    SIL,
    POSITIONS,
    SILENCE_PHONES,
    SPN,
    UNK,
    add_disambig,
    phone_sets,
    silence_phones,
    with_positions,
    word_boundary_lines,
    read_symbol_table,
    write_phone_groups,
    write_phone_list,
    write_symbol_table,
)
from asr_kd.lang.topo import load_topo, make_topo
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path, atomic_write_json, atomic_write_text, read_json

logger = logging.getLogger(__name__)

# Written last: its presence means the directory is complete.
_DONE_FILE = "lang_info.json"


@dataclasses.dataclass
class Lang:
    """A lang directory's symbol tables, phone classes and topology."""

    dir: Path
    word2id: dict[str, int]
    phone2id: dict[str, int]
    silence_phones: list[int]
    nonsilence_phones: list[int]
    optional_silence: int
    disambig_phones: list[int]
    oov_word: str
    topo_text: str
    info: dict

    @classmethod
    def load(cls, lang_dir: str | os.PathLike) -> "Lang":
        """Read a directory written by `prepare_lang` (or Kaldi's prepare_lang.sh)."""
        lang_dir = Path(lang_dir)
        if not lang_dir.is_dir():
            raise InputError(f"{lang_dir}: lang directory not found")
        phone2id = read_symbol_table(lang_dir / "phones.txt")

        def int_list(name: str) -> list[int]:
            path = lang_dir / "phones" / f"{name}.int"
            if not path.is_file():
                raise InputError(f"{path}: missing from the lang directory")
            return [int(x) for x in path.read_text().split()]

        topo_path, oov_path = lang_dir / "topo", lang_dir / "oov.txt"
        for path in (topo_path, oov_path):
            if not path.is_file():
                raise InputError(f"{path}: missing from the lang directory")
        info_path = lang_dir / _DONE_FILE
        word2id, oov_word = read_symbol_table(lang_dir / "words.txt"), oov_path.read_text().strip()
        if oov_word not in word2id:
            raise InputError(f"{oov_path}: OOV word {oov_word!r} is not in {lang_dir / 'words.txt'}")
        return cls(
            dir=lang_dir,
            word2id=word2id,
            phone2id=phone2id,
            silence_phones=int_list("silence"),
            nonsilence_phones=int_list("nonsilence"),
            optional_silence=int_list("optional_silence")[0],
            disambig_phones=int_list("disambig"),
            oov_word=oov_word,
            topo_text=topo_path.read_text(),
            info=read_json(info_path) if info_path.is_file() else {},
        )

    @property
    def id2word(self) -> dict[int, str]:
        """Word id -> word."""
        return {i: w for w, i in self.word2id.items()}

    @property
    def id2phone(self) -> dict[int, str]:
        """Phone id -> phone."""
        return {i: p for p, i in self.phone2id.items()}

    @property
    def phones(self) -> list[int]:
        """Real phone ids (silence and speech; no `<eps>`, no disambiguation symbols), sorted."""
        return sorted(self.silence_phones + self.nonsilence_phones)

    @property
    def oov_id(self) -> int:
        """Id of the OOV word (`<UNK>`)."""
        return self.word2id[self.oov_word]

    @property
    def word_disambig_id(self) -> int:
        """Id of `#0` in words.txt (G's back-off symbol)."""
        return self.word2id["#0"]

    @property
    def phone_disambig_zero(self) -> int:
        """Id of `#0` in phones.txt."""
        return self.phone2id["#0"]

    def topo(self):
        """The topology as a `kaldi_hmm_gmm.HmmTopology`."""
        return load_topo(self.topo_text)

    def read_fst(self, name: str):
        """Read `<lang>/<name>` (e.g. `L.fst`, `L_disambig.fst`, `G.fst`) as a kaldifst.StdVectorFst."""
        import kaldifst

        path = self.dir / name
        if not path.is_file():
            raise InputError(f"{path}: missing from the lang directory")
        return kaldifst.StdVectorFst.read(str(path))

    def words_to_ids(self, words: Iterable[str]) -> list[int]:
        """Word ids; words not in words.txt become the OOV word's id."""
        unk = self.oov_id
        return [self.word2id.get(w, unk) for w in words]


def _load_lexicon(lexicon_path: str | os.PathLike | None, keep_stress: bool,
                  words: set[str]) -> tuple[Lexicon, str]:
    if lexicon_path is None:
        return cmudict_lexicon(keep_stress, words), "CMUdict"
    # As Kaldi's LibriSpeech recipe: the given lexicon first, CMUdict for the words it lacks.
    lexicon = read_lexicon(lexicon_path, keep_stress)
    wanted = set(words) - RESERVED_WORDS - {"<UNK>"}
    lacking = [w for w in wanted if w not in lexicon]
    from_cmudict = cmudict_lexicon(keep_stress, lacking)
    logger.info("%s has %d of the %d words; CMUdict gives %d of the %d it lacks",
                lexicon_path, len(wanted) - len(lacking), len(wanted), len(from_cmudict), len(lacking))
    return lexicon | from_cmudict, f"{lexicon_path} or CMUdict"


def prepare_lang(
    lang_dir: str | os.PathLike,
    words: Iterable[str],
    lexicon_path: str | os.PathLike | None = None,
    *,
    keep_stress: bool = False,
    sil_prob: float = 0.5,
    oov_to_unk: bool = False,
    num_nonsil_states: int = 3,
    num_sil_states: int = 5,
    position_dependent: bool = False,
    lexicon: Mapping[str, list[tuple[str, ...]]] | None = None,
    lexicon_name: str = "given lexicon",
) -> Lang:
    """Write a Kaldi-layout lang directory for `words` and return it loaded.

    Pronunciations come from `lexicon` (a mapping, e.g. `bpe.bpe_lexicon`; `lexicon_name` names
    it in messages), else `lexicon_path`, else CMUdict. `<UNK>`
    (pronounced SPN) is always added; words the lexicon lacks raise `InputError` unless
    `oov_to_unk`. `position_dependent` gives Kaldi's word-position phones (`K_B AE_I T_E`, `AH_S`)
    and `phones/word_boundary.txt`. Skips the work if `lang_dir` was made from the same inputs.
    """
    lang_dir = Path(lang_dir)
    words = set(words)
    signature = _signature(words, lexicon_path, lexicon, keep_stress=keep_stress, sil_prob=sil_prob,
                           oov_to_unk=oov_to_unk, num_nonsil_states=num_nonsil_states, num_sil_states=num_sil_states,
                           position_dependent=position_dependent)
    done = lang_dir / _DONE_FILE
    if done.is_file() and read_json(done).get("signature") == signature:
        logger.info("%s is up to date; skipping", lang_dir)
        return Lang.load(lang_dir)
    # Files a previous build may have left that this one might not write.
    for stale in (done, lang_dir / "oov_words.txt", *(lang_dir / "phones").glob("word_boundary.*")):
        stale.unlink(missing_ok=True)
    if lexicon is None:
        full, source = _load_lexicon(lexicon_path, keep_stress, words)
    else:
        full, source = dict(lexicon), lexicon_name
    entries, missing = select_words(full, words, oov_to_unk=oov_to_unk, source=source)
    if not entries:
        raise InputError(f"none of the words are in the {source}")
    for word, prons in entries.items():
        for pron in prons:
            clash = set(pron) & set(SILENCE_PHONES)
            if clash:
                raise InputError(f"{source}: word {word!r} uses the silence phone {sorted(clash)[0]}")
    entries[UNK] = [(SPN,)]
    if position_dependent:
        entries = {w: [with_positions(pron) for pron in prons] for w, prons in entries.items()}
    silence = silence_phones(position_dependent)

    nonsilence = sorted({p for prons in entries.values() for pron in prons for p in pron} - set(silence))
    flat = [(w, pron) for w in sorted(entries) for pron in entries[w]]
    disambig_prons, max_disambig = add_disambig([pron for _, pron in flat])
    # One more than add_disambig used, as Kaldi's prepare_lang.sh keeps a spare for silence.
    disambig = [f"#{n}" for n in range(max_disambig + 2)]

    phone_symbols = ["<eps>", *silence, *nonsilence, *disambig]
    word_symbols = ["<eps>", *sorted(entries), "#0", "<s>", "</s>"]
    phone2id = {p: i for i, p in enumerate(phone_symbols)}
    word2id = {w: i for i, w in enumerate(word_symbols)}

    lang_dir.mkdir(parents=True, exist_ok=True)
    phones_dir = lang_dir / "phones"
    phones_dir.mkdir(exist_ok=True)
    write_symbol_table(phone_symbols, lang_dir / "phones.txt")
    write_symbol_table(word_symbols, lang_dir / "words.txt")
    write_lexicon(entries, lang_dir / "lexicon.txt")
    atomic_write_text(
        lang_dir / "lexicon_disambig.txt",
        "".join(f"{w} {' '.join(p)}\n" for (w, _), p in zip(flat, disambig_prons)),
    )
    atomic_write_text(lang_dir / "oov.txt", UNK + "\n")
    atomic_write_text(lang_dir / "oov.int", f"{word2id[UNK]}\n")

    _write_phone_classes(phones_dir, silence, nonsilence, disambig, phone2id, word2id)
    if position_dependent:
        boundary = word_boundary_lines([*silence, *nonsilence], silence)
        atomic_write_text(phones_dir / "word_boundary.txt", "".join(f"{line}\n" for line in boundary))
        atomic_write_text(phones_dir / "word_boundary.int", "".join(
            f"{phone2id[phone]} {kind}\n" for phone, kind in (line.split() for line in boundary)))

    sil_ids = [phone2id[p] for p in silence]
    nonsil_ids = [phone2id[p] for p in nonsilence]
    topo_text = make_topo(nonsil_ids, sil_ids, num_nonsil_states, num_sil_states)
    load_topo(topo_text)  # fail here, not in training, if Kaldi would reject it
    atomic_write_text(lang_dir / "topo", topo_text)

    plain = [(word2id[w], [phone2id[p] for p in pron]) for w, pron in flat]
    with_disambig = [(word2id[w], [phone2id[p] for p in pron]) for (w, _), pron in zip(flat, disambig_prons)]
    lexicon_fst = make_lexicon_fst(plain, phone2id[SIL], sil_prob)
    lexicon_disambig_fst = make_lexicon_fst(
        with_disambig, phone2id[SIL], sil_prob, word_disambig=(phone2id["#0"], word2id["#0"])
    )
    for fst, name in ((lexicon_fst, "L.fst"), (lexicon_disambig_fst, "L_disambig.fst")):
        with atomic_path(lang_dir / name) as tmp:
            if not fst.write(str(tmp)):
                raise OSError(f"could not write {lang_dir / name}")

    info = {
        "lexicon_source": source,
        "num_words": len(entries),
        "num_prons": len(flat),
        "num_nonsilence_phones": len(nonsilence),
        "num_disambig": len(disambig),
        "words_missing_from_lexicon": len(missing),
        "keep_stress": keep_stress,
        "sil_prob": sil_prob,
        "num_nonsil_states": num_nonsil_states,
        "num_sil_states": num_sil_states,
        "position_dependent_phones": position_dependent,
        "signature": signature,
    }
    if missing:
        atomic_write_text(lang_dir / "oov_words.txt", "\n".join(missing) + "\n")
    atomic_write_json(lang_dir / _DONE_FILE, info)
    logger.info(
        "wrote %s: %d words, %d pronunciations, %d speech phones, %d disambiguation symbols",
        lang_dir, len(entries), len(flat), len(nonsilence), len(disambig),
    )
    return Lang.load(lang_dir)


def _write_phone_classes(phones_dir: Path, silence: list[str], nonsilence: list[str], disambig: list[str],
                         phone2id: Mapping[str, int], word2id: Mapping[str, int]) -> None:
    """phones/: Kaldi's phone classes (silence, disambiguation, tree sets/roots/questions)."""
    write_phone_list(phones_dir, "silence", silence, phone2id)
    write_phone_list(phones_dir, "nonsilence", nonsilence, phone2id)
    write_phone_list(phones_dir, "optional_silence", [SIL], phone2id)
    write_phone_list(phones_dir, "disambig", disambig, phone2id)
    write_phone_list(phones_dir, "context_indep", silence, phone2id)
    write_phone_list(phones_dir, "wdisambig_phones", ["#0"], phone2id)
    atomic_write_text(phones_dir / "wdisambig_words.int", f"{word2id['#0']}\n")
    sets = phone_sets(silence, nonsilence)
    write_phone_groups(phones_dir, "sets", sets, phone2id)
    # Kaldi's default roots: each set has one tree root shared by its HMM states ("shared"), and
    # the tree may split it by context and pdf-class ("split").
    write_phone_groups(phones_dir, "roots", sets, phone2id, prefix="shared split ")
    write_phone_groups(phones_dir, "extra_questions", _extra_questions(silence, nonsilence), phone2id)


def _signature(words: set[str], lexicon_path: str | os.PathLike | None,
               lexicon: Mapping[str, list[tuple[str, ...]]] | None, **options) -> str:
    """Hash of everything a lang directory is made from, so a changed input rebuilds it."""
    h = hashlib.sha1()
    h.update("\n".join(sorted(words)).encode())
    h.update(json.dumps(options, sort_keys=True).encode())
    if lexicon is not None:
        h.update(repr(sorted((w, lexicon[w]) for w in words if w in lexicon)).encode())
    elif lexicon_path is not None:
        path = Path(lexicon_path)
        stat = (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None
        h.update(f"{path.resolve()} {stat}".encode())
    return h.hexdigest()


def _extra_questions(silence: list[str], nonsilence: list[str]) -> list[list[str]]:
    """Kaldi's extra questions: the silence phones, one group per stress mark (when kept) and one
    per word position (when position-dependent)."""
    groups: dict[str, list[str]] = {}
    for p in nonsilence:
        position = p[-2:] if p[-2:] in POSITIONS else ""
        unpositioned = p[: len(p) - len(position)]
        if unpositioned[-1].isdigit():
            groups.setdefault("stress" + unpositioned[-1], []).append(p)
        if position:
            groups.setdefault(position, []).append(p)
    return [silence] + [groups[k] for k in sorted(groups)]
