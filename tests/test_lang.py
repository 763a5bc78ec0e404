"""Lang directory: lexicon reading, disambiguation symbols, topology, and the L transducers."""

from __future__ import annotations

import math
from pathlib import Path

import kaldifst
import pytest

from asr_kd.lang import Lang, prepare_lang
from asr_kd.lang.lexicon import cmudict_lexicon, read_lexicon
from asr_kd.lang.phones import add_disambig
from asr_kd.utils.errors import InputError

# A hand-made lexicon: HE is a prefix of HEAT, RED/READ are homophones, READ has two readings.
LEXICON = {
    "HE": [("HH", "IY")],
    "HEAT": [("HH", "IY", "T")],
    "RED": [("R", "EH", "D")],
    "READ": [("R", "EH", "D"), ("R", "IY", "D")],
    "CAT": [("K", "AE", "T")],
}


def fst_paths(fst) -> list[tuple[list[int], list[int], float]]:
    """Every (input labels, output labels, cost) of an acyclic FST, epsilons dropped."""
    out = []

    def walk(state, ilabels, olabels, cost):
        final = fst.final(state).value
        if final != math.inf:
            out.append((ilabels, olabels, cost + final))
        for arc in kaldifst.ArcIterator(fst, state):
            walk(
                arc.nextstate,
                ilabels + ([arc.ilabel] if arc.ilabel else []),
                olabels + ([arc.olabel] if arc.olabel else []),
                cost + arc.weight.value,
            )

    walk(fst.start, [], [], 0.0)
    return out


def pronunciations_of(lang: Lang, fst_name: str, words: list[str]) -> dict[tuple[str, ...], float]:
    """Phone strings (with costs) that L maps to exactly `words`."""
    lexicon_fst = lang.read_fst(fst_name)
    words_fst = kaldifst.make_linear_acceptor(lang.words_to_ids(words))
    id2phone = lang.id2phone
    return {
        tuple(id2phone[i] for i in ilabels): cost
        for ilabels, _, cost in fst_paths(kaldifst.compose(lexicon_fst, words_fst))
    }


@pytest.fixture(scope="module")
def small_lang(tmp_path_factory) -> Lang:
    return prepare_lang(tmp_path_factory.mktemp("lang"), list(LEXICON), lexicon=LEXICON, sil_prob=0.3)


def test_add_disambig_marks_prefixes_and_homophones():
    prons = [("A", "B"), ("A", "B"), ("A",), ("C",), ("A", "B", "C")]
    out, max_used = add_disambig(prons)
    # (A B) occurs twice and is a prefix of (A B C); (A) is a prefix; (C) and (A B C) are unique.
    assert out == [("A", "B", "#1"), ("A", "B", "#2"), ("A", "#1"), ("C",), ("A", "B", "C")]
    assert max_used == 2


def test_lang_dir_has_kaldi_layout_and_symbol_tables(small_lang):
    d = small_lang.dir
    for name in ["words.txt", "phones.txt", "topo", "L.fst", "L_disambig.fst", "oov.txt", "oov.int"]:
        assert (d / name).is_file(), name
    for name in ["silence", "nonsilence", "optional_silence", "disambig"]:
        for ext in ["txt", "int", "csl"]:
            assert (d / "phones" / f"{name}.{ext}").is_file(), f"{name}.{ext}"
    words = small_lang.word2id
    assert words["<eps>"] == 0
    assert {"#0", "<s>", "</s>", "<UNK>", *LEXICON} <= set(words)
    phones = small_lang.phone2id
    assert phones["<eps>"] == 0
    # Speech phones are exactly those of the lexicon; SIL and SPN are the silence phones.
    speech = {p for prons in LEXICON.values() for pron in prons for p in pron}
    assert {small_lang.id2phone[i] for i in small_lang.nonsilence_phones} == speech
    assert [small_lang.id2phone[i] for i in small_lang.silence_phones] == ["SIL", "SPN"]
    assert small_lang.optional_silence == phones["SIL"]
    # Disambiguation: HE (prefix) and the RED/READ homophones need #1 and #2, plus #0 and a spare.
    assert [small_lang.id2phone[i] for i in small_lang.disambig_phones] == ["#0", "#1", "#2", "#3"]
    assert (d / "phones" / "disambig.csl").read_text().strip() == ":".join(map(str, small_lang.disambig_phones))
    assert small_lang.oov_word == "<UNK>"
    assert int((d / "oov.int").read_text()) == words["<UNK>"]


def test_lexicon_fst_gives_pronunciations_with_optional_silence(small_lang):
    got = pronunciations_of(small_lang, "L.fst", ["CAT", "READ"])
    sil, no_sil = -math.log(0.3), -math.log(0.7)
    expected = {}
    for read in [("R", "EH", "D"), ("R", "IY", "D")]:
        for lead in [(), ("SIL",)]:
            for mid in [(), ("SIL",)]:
                for tail in [(), ("SIL",)]:
                    n_sil = len(lead) + len(mid) + len(tail)
                    phones = lead + ("K", "AE", "T") + mid + read + tail
                    expected[phones] = n_sil * sil + (3 - n_sil) * no_sil
    assert set(got) == set(expected)
    for phones, cost in expected.items():
        assert got[phones] == pytest.approx(cost, abs=1e-5)


def test_lexicon_disambig_fst_tells_homophones_and_prefixes_apart(small_lang):
    assert set(pronunciations_of(small_lang, "L_disambig.fst", ["HE"])) >= {("HH", "IY", "#1")}
    assert ("HH", "IY", "T") in pronunciations_of(small_lang, "L_disambig.fst", ["HEAT"])
    # READ's R EH D comes before RED's in sorted word order, so READ gets #1 and RED #2.
    assert ("R", "EH", "D", "#1") in pronunciations_of(small_lang, "L_disambig.fst", ["READ"])
    assert ("R", "IY", "D") in pronunciations_of(small_lang, "L_disambig.fst", ["READ"])
    assert ("R", "EH", "D", "#2") in pronunciations_of(small_lang, "L_disambig.fst", ["RED"])
    # The #0:#0 self-loop lets G's back-off symbol through between words.
    lexicon_fst = small_lang.read_fst("L_disambig.fst")
    zero_phone, zero_word = small_lang.phone2id["#0"], small_lang.word2id["#0"]
    loops = [
        (s, a) for s in kaldifst.StateIterator(lexicon_fst) for a in kaldifst.ArcIterator(lexicon_fst, s)
        if a.ilabel == zero_phone
    ]
    assert len(loops) == 1 and loops[0][1].olabel == zero_word and loops[0][1].nextstate == loops[0][0]


def test_topology_loads_in_kaldi_with_three_and_five_states(small_lang):
    import kaldi_hmm_gmm

    topo = small_lang.topo()
    assert topo.phones == small_lang.phones
    for p in small_lang.nonsilence_phones:
        assert topo.num_pdf_classes(p) == 3
    for p in small_lang.silence_phones:
        assert topo.num_pdf_classes(p) == 5
    # Kaldi's gen_topo.pl: speech states loop 0.75 / advance 0.25; silence state 0 may enter any
    # of states 0-3, states 1-3 reach 1-4, only state 4 exits (to the final state 5).
    speech = [[tuple(t) for t in s.transitions] for s in topo.topology_for_phone(small_lang.nonsilence_phones[0])]
    assert speech == [[(0, 0.75), (1, 0.25)], [(1, 0.75), (2, 0.25)], [(2, 0.75), (3, 0.25)], []]
    sil = [[t[0] for t in s.transitions] for s in topo.topology_for_phone(small_lang.optional_silence)]
    assert sil == [[0, 1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [4, 5], []]
    ctx_dep = kaldi_hmm_gmm.monophone_context_dependency(topo.phones, topo.get_phone_to_num_pdf_classes())
    trans_model = kaldi_hmm_gmm.TransitionModel(ctx_dep, topo)
    assert trans_model.num_pdfs == 3 * len(small_lang.nonsilence_phones) + 5 * 2


def test_cmudict_strips_stress_and_merges_duplicate_readings(tmp_path):
    plain = cmudict_lexicon(words=["READ", "THE"])
    assert set(plain["READ"]) == {("R", "EH", "D"), ("R", "IY", "D")}
    assert len(plain["READ"]) == 2
    lang = prepare_lang(tmp_path / "lang", ["READ", "THE"], keep_stress=True)
    assert "EH1" in lang.phone2id and "EH" not in lang.phone2id
    # Stress variants of one phone share a tree root, as in Kaldi's sets.txt.
    sets = (lang.dir / "phones" / "sets.txt").read_text().splitlines()
    assert "AH0 AH1" in sets


def test_missing_words_raise_or_map_to_unk(tmp_path):
    with pytest.raises(InputError, match="1 of 2 words.*NOTAWORDX"):
        prepare_lang(tmp_path / "a", ["CAT", "NOTAWORDX"], lexicon=LEXICON)
    lang = prepare_lang(tmp_path / "b", ["CAT", "NOTAWORDX"], lexicon=LEXICON, oov_to_unk=True)
    assert "NOTAWORDX" not in lang.word2id
    assert lang.words_to_ids(["NOTAWORDX"]) == [lang.word2id["<UNK>"]]
    assert (lang.dir / "oov_words.txt").read_text().split() == ["NOTAWORDX"]


def test_read_lexicon_names_file_and_line_of_a_bad_entry(tmp_path):
    path = tmp_path / "lexicon.txt"
    path.write_text("CAT\tK AE T\nDOG D AO1 G\nBROKEN\n")
    with pytest.raises(InputError, match=r"lexicon.txt:3: word 'BROKEN' has no phones"):
        read_lexicon(path)
    path.write_text("CAT K AE T\nDOG D #1 G\n")
    with pytest.raises(InputError, match=r"lexicon.txt:2: phone '#1'"):
        read_lexicon(path)
    path.write_text("CAT K AE T\nDOG D AO1 G\n")
    assert read_lexicon(path) == {"CAT": [("K", "AE", "T")], "DOG": [("D", "AO", "G")]}


def test_prepare_lang_cli_from_text_and_lexicon_file(tmp_path: Path, capsys):
    from asr_kd.bin.prepare_lang import main

    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("".join(f"{w} {' '.join(p)}\n" for w, prons in LEXICON.items() for p in prons))
    text = tmp_path / "text.txt"
    text.write_text("HE READ\nRED CAT HEAT\n")
    assert main(["--lang-dir", str(tmp_path / "lang"), "--text", str(text), "--lexicon", str(lexicon)]) == 0
    lang = Lang.load(tmp_path / "lang")
    assert set(LEXICON) | {"<UNK>"} <= set(lang.word2id)
    capsys.readouterr()
    # DOG is not in the lexicon file: CMUdict pronounces it. ZZQXW is in neither: an error naming it.
    text.write_text("HE READ DOG\n")
    assert main(["--lang-dir", str(tmp_path / "lang2"), "--text", str(text), "--lexicon", str(lexicon)]) == 0
    assert "DOG" in Lang.load(tmp_path / "lang2").word2id
    capsys.readouterr()
    text.write_text("HE READ ZZQXW\n")
    assert main(["--lang-dir", str(tmp_path / "lang3"), "--text", str(text), "--lexicon", str(lexicon)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("asr-kd prepare-lang: error: 1 of 3 words")
    assert "ZZQXW" in err[-1] and "--oov-to-unk" in err[-1]


def test_bpe_lang_spells_words_in_pieces(tmp_path):
    from asr_kd.lang.bpe import bpe_lexicon, train_bpe

    text = tmp_path / "text.txt"
    sentences = ["THE UTENSIL IS ON THE TABLE", "SILENT NIGHTS ARE LONG", "THE SILVER UTENSILS SHINE",
                 "A LONG TABLE OF SILVER", "NIGHTS ON THE TABLE ARE SILENT"] * 20
    text.write_text("\n".join(sentences) + "\n")
    model = train_bpe(text, tmp_path / "bpe.model", vocab_size=40)
    words = sorted({w for s in sentences for w in s.split()})
    lexicon = bpe_lexicon(words, model)
    for word, [pieces] in lexicon.items():
        # Pieces spell the word: drop the word-start mark, undo the lower-casing.
        assert "".join(pieces).replace("\u2581", "").upper() == word
    lang = prepare_lang(tmp_path / "lang", words, lexicon=lexicon, lexicon_name="BPE")
    # Piece names never collide with the silence phones, even for words containing "SIL".
    assert [lang.id2phone[i] for i in lang.silence_phones] == ["SIL", "SPN"]
    assert all(lang.id2phone[i].islower() or not lang.id2phone[i].isalpha() for i in lang.nonsilence_phones)
    got = pronunciations_of(lang, "L.fst", ["UTENSIL"])
    assert tuple(lexicon["UTENSIL"][0]) in got


def test_prepare_lang_reruns_only_when_its_inputs_change(tmp_path):
    lang = prepare_lang(tmp_path / "lang", ["CAT", "RED"], lexicon=LEXICON)
    stamp = (lang.dir / "L.fst").stat().st_mtime_ns
    prepare_lang(tmp_path / "lang", ["RED", "CAT"], lexicon=LEXICON)
    assert (lang.dir / "L.fst").stat().st_mtime_ns == stamp
    lang = prepare_lang(tmp_path / "lang", ["CAT", "RED", "HEAT"], lexicon=LEXICON)
    assert "HEAT" in lang.word2id
    lang = prepare_lang(tmp_path / "lang", ["CAT", "RED", "HEAT"], lexicon=LEXICON, sil_prob=0.2)
    assert lang.info["sil_prob"] == 0.2


def test_position_dependent_phones_mark_word_positions(tmp_path):
    lexicon = {**LEXICON, "A": [("AH",)], "TEA": [("T", "IY")]}
    lang = prepare_lang(tmp_path / "lang", ["A", "CAT", "TEA"], lexicon=lexicon, position_dependent=True)
    got = pronunciations_of(lang, "L.fst", ["A", "CAT"])
    # Optional silence stays the plain SIL phone between words.
    assert ("AH_S", "K_B", "AE_I", "T_E") in got and ("AH_S", "SIL", "K_B", "AE_I", "T_E", "SIL") in got
    silence = [lang.id2phone[i] for i in lang.silence_phones]
    assert silence == ["SIL", "SIL_B", "SIL_E", "SIL_I", "SIL_S", "SPN", "SPN_B", "SPN_E", "SPN_I", "SPN_S"]
    assert ("SPN_S",) in pronunciations_of(lang, "L.fst", ["<UNK>"])
    boundary = dict(line.split() for line in (lang.dir / "phones" / "word_boundary.txt").read_text().splitlines())
    assert boundary["K_B"] == "begin" and boundary["AE_I"] == "internal" and boundary["T_E"] == "end"
    assert boundary["AH_S"] == "singleton" and boundary["SIL"] == boundary["SPN_S"] == "nonword"
    # The variants of one phone share a set (one tree root): T begins TEA and ends CAT.
    sets = (lang.dir / "phones" / "sets.txt").read_text().splitlines()
    assert "SIL SIL_B SIL_E SIL_I SIL_S" in sets and "T_B T_E" in sets
    questions = (lang.dir / "phones" / "extra_questions.txt").read_text().splitlines()
    assert "K_B T_B" in questions and "AE_I" in questions
    topo = lang.topo()
    assert all(topo.num_pdf_classes(i) == 5 for i in lang.silence_phones)
