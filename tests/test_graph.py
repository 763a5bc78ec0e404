"""HCLG construction: build graphs for a tiny lexicon + LM and decode score matrices through them."""

from __future__ import annotations

import struct
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np
import pytest

from asr_kd.gmm.model_io import save_model, save_tree, tree_from_bytes
from asr_kd.lang import Lang, prepare_lang
from asr_kd.gmm.graph import fst_size, make_hclg
from asr_kd.lang.lm import make_lang_test, train_arpa
from asr_kd.lang.phones import with_positions
from asr_kd.utils.io import read_json

# BEE is a homophone of B, and B/C share the vowel IY: a triphone tree can tell IY after B from
# IY after S only through the left context that C (the context transducer) supplies.
LEXICON = {
    "A": [("AH",)],
    "B": [("B", "IY")],
    "BEE": [("B", "IY")],
    "C": [("S", "IY")],
    "CAB": [("K", "AE", "B")],
}
LM_TEXT = ["A B C", "A BEE", "CAB A", "C A B", "B C CAB", "CAB A B C"]


def _tok(s: str) -> bytes:
    return s.encode() + b" "


def _i32(v: int) -> bytes:
    return b"\x04" + struct.pack("<i", v)


def _u32(v: int) -> bytes:
    return b"\xfc" + struct.pack("<I", v)


def triphone_tree(lang: Lang) -> khg.ContextDependency:
    """A Kaldi binary triphone tree (N=3, P=1) written independently of the GMM code.

    Each phone's HMM states get their own pdfs, except that the first state of IY is split in
    two by its left phone: one pdf after B, another after anything else.
    """
    topo = lang.topo()
    iy, b = lang.phone2id["IY"], lang.phone2id["B"]
    next_pdf = 0
    per_phone = [_tok("NULL")]  # phone 0 does not exist
    for phone in range(1, max(topo.phones) + 1):
        classes = []
        for pdf_class in range(topo.num_pdf_classes(phone)):
            if phone == iy and pdf_class == 0:
                yes_set = struct.pack("<ii", 1, b)  # a vector<int32> of one element: {B}
                classes.append(_tok("SE") + _i32(0) + b"\x04" + yes_set + _tok("{")
                               + _tok("CE") + _i32(next_pdf) + _tok("CE") + _i32(next_pdf + 1) + _tok("}"))
                next_pdf += 2
            else:
                classes.append(_tok("CE") + _i32(next_pdf))
                next_pdf += 1
        per_phone.append(_tok("TE") + _i32(-1) + _u32(len(classes)) + _tok("(") + b"".join(classes) + _tok(")"))
    event_map = _tok("TE") + _i32(1) + _u32(len(per_phone)) + _tok("(") + b"".join(per_phone) + _tok(")")
    data = _tok("ContextDependency") + _i32(3) + _i32(1) + _tok("ToPdf") + event_map + _tok("EndContextDependency")
    ctx = tree_from_bytes(data)
    assert ctx.num_pdfs == next_pdf
    return ctx


@pytest.fixture(scope="module")
def lang_test(tmp_path_factory) -> Lang:
    d = tmp_path_factory.mktemp("graph")
    prepare_lang(d / "lang", list(LEXICON), lexicon=LEXICON)
    (d / "lm.txt").write_text("\n".join(LM_TEXT) + "\n")
    train_arpa(d / "lm.txt", d / "lm.arpa", order=3)
    return Lang.load(make_lang_test(d / "lang", d / "lm.arpa", d / "lang_test"))


def build(lang: Lang, out: Path, kind: str) -> tuple[khg.ContextDependency, khg.TransitionModel, Path]:
    topo = lang.topo()
    if kind == "mono":
        ctx = khg.monophone_context_dependency(topo.phones, topo.get_phone_to_num_pdf_classes())
    else:
        ctx = triphone_tree(lang)
    trans_model = khg.TransitionModel(ctx, topo)
    save_tree(ctx, out / "tree")
    save_model(trans_model, khg.AmDiagGmm(), out / "final.mdl")
    hclg = make_hclg(lang.dir, out / "tree", out / "final.mdl", out / "graph")
    return ctx, trans_model, hclg


def favoured_pdfs(lang: Lang, ctx, words: list[str], silence_after: set[int], frames: int = 3) -> list[int]:
    """The pdf of every frame of `words` (first pronunciation), SIL after the words in `silence_after`."""
    phones = []
    for i, w in enumerate(words):
        pron = LEXICON[w][0]
        if lang.info["position_dependent_phones"]:
            pron = with_positions(pron)
        phones += [lang.phone2id[p] for p in pron]
        if i in silence_after:
            phones.append(lang.phone2id["SIL"])
    topo = lang.topo()
    padded = [0] + phones + [0]  # 0 = utterance boundary, as in Kaldi's context transducer
    pdfs = []
    for i, phone in enumerate(phones):
        window = padded[i:i + 3] if ctx.context_width == 3 else [phone]
        for pdf_class in range(topo.num_pdf_classes(phone)):
            ok, pdf = ctx.compute(window, pdf_class)
            assert ok
            pdfs += [pdf] * frames
    return pdfs


def decode(hclg_path: Path, trans_model, pdfs: list[int]) -> tuple[list[int], list[int], float]:
    """Best path (word ids, transition ids, acoustic cost) for scores favouring `pdfs` frame by frame."""
    scores = np.full((len(pdfs), trans_model.num_pdfs), -30.0, dtype=np.float32)
    scores[np.arange(len(pdfs)), pdfs] = 0.0
    tid2pdf = np.asarray(trans_model.transition_id_to_pdf_array())
    hclg = kaldifst.StdVectorFst.read(str(hclg_path))
    decoder = khg.FasterDecoder(hclg, khg.FasterDecoderOptions(beam=20.0))
    decoder.decode(khg.DecodableCtc(scores[:, tid2pdf[1:]]))
    assert decoder.reached_final()
    ok, best = decoder.get_best_path()
    assert ok
    _, tids, word_ids, weight = kaldifst.get_linear_symbol_sequence(best)
    return word_ids, tids, weight.value2


@pytest.mark.parametrize("kind", ["mono", "tri"])
@pytest.mark.parametrize(
    "words, silence_after",
    [(["CAB", "A", "B", "C"], set()), (["A", "C"], {0}), (["C", "A", "B"], {0, 2})],
)
def test_decoding_scores_that_favour_a_sentence_returns_it(lang_test, tmp_path, kind, words, silence_after):
    ctx, trans_model, hclg = build(lang_test, tmp_path, kind)
    pdfs = favoured_pdfs(lang_test, ctx, words, silence_after)
    word_ids, tids, acoustic_cost = decode(hclg, trans_model, pdfs)
    assert [lang_test.id2word[w] for w in word_ids] == words
    assert acoustic_cost == pytest.approx(0.0, abs=1e-4)
    # The best path passes through exactly the favoured HMM states, one transition-id per frame.
    tid2pdf = trans_model.transition_id_to_pdf_array()
    assert [tid2pdf[t] for t in tids] == pdfs


def test_position_dependent_lang_decodes_through_its_graph(tmp_path):
    prepare_lang(tmp_path / "lang", list(LEXICON), lexicon=LEXICON, position_dependent=True)
    (tmp_path / "lm.txt").write_text("\n".join(LM_TEXT) + "\n")
    train_arpa(tmp_path / "lm.txt", tmp_path / "lm.arpa", order=3)
    lang = Lang.load(make_lang_test(tmp_path / "lang", tmp_path / "lm.arpa", tmp_path / "lang_test"))
    ctx, trans_model, hclg = build(lang, tmp_path, "mono")
    pdfs = favoured_pdfs(lang, ctx, ["CAB", "A", "C"], {1})
    word_ids, tids, _ = decode(hclg, trans_model, pdfs)
    assert [lang.id2word[w] for w in word_ids] == ["CAB", "A", "C"]
    assert [trans_model.transition_id_to_pdf_array()[t] for t in tids] == pdfs


def test_triphone_graph_uses_left_context(lang_test, tmp_path):
    ctx, trans_model, hclg = build(lang_test, tmp_path, "tri")
    iy, b, s = (lang_test.phone2id[p] for p in ("IY", "B", "S"))
    after_b, after_s = ctx.compute([b, iy, 0], 0)[1], ctx.compute([s, iy, 0], 0)[1]
    assert after_b != after_s
    # "A C" but with the IY pdf that only follows B: the graph has no path with that pdf after S,
    # so every path for "A C" pays -30 on each of those 3 frames.
    pdfs = favoured_pdfs(lang_test, ctx, ["A", "C"], set())
    assert pdfs.count(after_s) == 3
    wrong = [after_b if p == after_s else p for p in pdfs]
    word_ids, tids, acoustic_cost = decode(hclg, trans_model, wrong)
    assert [lang_test.id2word[w] for w in word_ids] == ["A", "C"]
    assert after_b not in {trans_model.transition_id_to_pdf_array()[t] for t in tids}
    assert acoustic_cost == pytest.approx(3 * 30.0, abs=1e-3)


def test_hclg_has_only_transition_ids_and_reports_its_size(lang_test, tmp_path):
    _, trans_model, hclg_path = build(lang_test, tmp_path, "tri")
    hclg = kaldifst.StdVectorFst.read(str(hclg_path))
    ilabels = {a.ilabel for s in kaldifst.StateIterator(hclg) for a in kaldifst.ArcIterator(hclg, s)}
    olabels = {a.olabel for s in kaldifst.StateIterator(hclg) for a in kaldifst.ArcIterator(hclg, s)}
    # Disambiguation symbols are gone: every input label is epsilon or a transition-id.
    assert ilabels <= set(range(trans_model.num_transition_ids + 1))
    # Output labels are real words only (no #0, <s>, </s>).
    assert olabels - {0} <= {lang_test.word2id[w] for w in LEXICON}
    info = read_json(hclg_path.parent / "info.json")
    assert info["sizes"]["HCLG"] == fst_size(hclg)
    assert info["context_width"] == 3 and info["central_position"] == 1
    assert set(info["seconds"]) == {"LG", "CLG", "HCLGa", "HCLG"}


def test_tree_and_model_that_disagree_are_rejected(lang_test, tmp_path):
    from asr_kd.utils.errors import InputError

    topo = lang_test.topo()
    mono = khg.monophone_context_dependency(topo.phones, topo.get_phone_to_num_pdf_classes())
    save_tree(mono, tmp_path / "tree")
    save_model(khg.TransitionModel(triphone_tree(lang_test), topo), khg.AmDiagGmm(), tmp_path / "final.mdl")
    with pytest.raises(InputError, match="pdfs"):
        make_hclg(lang_test.dir, tmp_path / "tree", tmp_path / "final.mdl", tmp_path / "graph")


def test_make_graph_cli_and_bad_model(lang_test, tmp_path, capsys):
    from asr_kd.bin.make_graph import main

    topo = lang_test.topo()
    ctx = khg.monophone_context_dependency(topo.phones, topo.get_phone_to_num_pdf_classes())
    save_tree(ctx, tmp_path / "tree")
    save_model(khg.TransitionModel(ctx, topo), khg.AmDiagGmm(), tmp_path / "final.mdl")
    args = ["--lang-dir", str(lang_test.dir), "--model-dir", str(tmp_path), "--graph-dir", str(tmp_path / "graph")]
    assert main(args) == 0
    assert (tmp_path / "graph" / "HCLG.fst").is_file() and (tmp_path / "graph" / "words.txt").is_file()
    capsys.readouterr()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tree").write_bytes(b"not a tree")
    (tmp_path / "bad" / "final.mdl").write_bytes(b"junk")
    args = ["--lang-dir", str(lang_test.dir), "--model-dir", str(tmp_path / "bad"), "--graph-dir", str(tmp_path / "g2")]
    assert main(args) == 2
    assert "tree" in capsys.readouterr().err.strip().splitlines()[-1]


def test_graph_is_rebuilt_only_when_an_input_changes(lang_test, tmp_path):
    _, _, hclg_path = build(lang_test, tmp_path, "mono")
    stamp = hclg_path.stat().st_mtime_ns
    assert make_hclg(lang_test.dir, tmp_path / "tree", tmp_path / "final.mdl", tmp_path / "graph") == hclg_path
    assert hclg_path.stat().st_mtime_ns == stamp
    # A new (triphone) system written over the old one: the graph must follow it.
    build(lang_test, tmp_path, "tri")
    assert read_json(tmp_path / "graph" / "info.json")["context_width"] == 3
