"""N-gram LM: ARPA reading and back-off scoring, kaldingram training, perplexity, G.fst."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import kaldifst
import pytest

from asr_kd.lang import Lang, prepare_lang
from asr_kd.lang.lm import ArpaLM, arpa_to_g, make_lang_test, map_text_to_vocab, perplexity, prune_arpa, train_arpa
from asr_kd.utils.errors import InputError

LEXICON = {
    "A": [("AH",)],
    "B": [("B", "IY")],
    "C": [("S", "IY")],
}

# Hand-written bigram LM over A B C (log10 probabilities; back-off weights in the last column).
ARPA = """\\data\\
ngram 1=5
ngram 2=3

\\1-grams:
-1.0\t</s>
-99\t<s>\t-0.5
-0.5\tA\t-0.2
-0.7\tB\t-0.3
-0.9\tC\t-0.1

\\2-grams:
-0.1\t<s> A
-0.2\tA B
-0.3\tB </s>

\\end\\
"""

TRAIN_TEXT = ["A B C", "A B", "B C A", "C A B C", "A C", "B B A C", "A B C A B"]


@pytest.fixture(scope="module")
def abc_lang(tmp_path_factory) -> Lang:
    return prepare_lang(tmp_path_factory.mktemp("lang"), list(LEXICON), lexicon=LEXICON)


def test_backoff_scoring_matches_hand_computation(tmp_path):
    (tmp_path / "lm.arpa").write_text(ARPA)
    lm = ArpaLM.read(tmp_path / "lm.arpa")
    assert lm.order == 2 and lm.counts == [5, 3]
    assert lm.word_logprob(("<s>",), "A") == pytest.approx(-0.1)  # explicit bigram
    assert lm.word_logprob(("A",), "C") == pytest.approx(-0.2 + -0.9)  # bow(A) + p(C)
    assert lm.word_logprob(("C",), "</s>") == pytest.approx(-0.1 + -1.0)
    # "A B": p(A|<s>) + p(B|A) + p(</s>|B) = -0.1 - 0.2 - 0.3 over 3 tokens.
    stats = perplexity(lm, [["A", "B"]])
    assert stats["log10_prob"] == pytest.approx(-0.6)
    assert stats["ppl"] == pytest.approx(10 ** (0.6 / 3))
    # A word outside the LM with no <UNK> in it: skipped and counted, context restarts.
    stats = perplexity(lm, [["A", "Z", "B"]])
    assert stats["num_oov"] == 1
    assert stats["log10_prob"] == pytest.approx(-0.1 + -0.7 + -0.3)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("-0.2\tA B", "-0.2x\tA B"), r"lm.arpa:14: not a number"),
        (lambda t: t.replace("-0.3\tB </s>", "-0.3\tB"), r"lm.arpa:15: a 2-gram line needs"),
        (lambda t: t.replace("ngram 2=3", "ngram 2=4"), r"declares 4 2-grams but the file has 3"),
        (lambda t: t.replace("\\end\\\n", ""), r"no \\end\\ line"),
        (lambda t: "hello\n" + t, r"lm.arpa:1: unexpected line"),
    ],
)
def test_malformed_arpa_is_reported_with_its_line(tmp_path, edit, message):
    (tmp_path / "lm.arpa").write_text(edit(ARPA))
    with pytest.raises(InputError, match=message):
        ArpaLM.read(tmp_path / "lm.arpa")


def test_trained_lm_perplexity_agrees_with_kaldingram(tmp_path):
    (tmp_path / "train.txt").write_text("\n".join(TRAIN_TEXT) + "\n")
    arpa = train_arpa(tmp_path / "train.txt", tmp_path / "lm.arpa", order=3)
    lm = ArpaLM.read(arpa)
    assert lm.order == 3 and lm.vocab == {"A", "B", "C", "<s>", "</s>"}
    dev = ["A B C", "C A B", "B A"]
    (tmp_path / "dev.txt").write_text("\n".join(dev) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "kaldingram.cli", "ppl", "--lm", str(arpa), "--text", str(tmp_path / "dev.txt")],
        capture_output=True, text=True, check=True,
    ).stdout
    theirs = float(re.search(r"logprob= (\S+) ppl= (\S+)", out).group(2))
    ours = perplexity(lm, [s.split() for s in dev])["ppl"]
    assert ours == pytest.approx(theirs, rel=1e-4)


def test_pruning_drops_higher_order_ngrams_and_keeps_a_valid_lm(tmp_path):
    (tmp_path / "train.txt").write_text("\n".join(TRAIN_TEXT) + "\n")
    full = ArpaLM.read(train_arpa(tmp_path / "train.txt", tmp_path / "lm.arpa", order=3))
    pruned = ArpaLM.read(prune_arpa(tmp_path / "lm.arpa", tmp_path / "pruned.arpa", threshold=0.01))
    assert pruned.counts[0] == full.counts[0]
    assert sum(pruned.counts[1:]) < sum(full.counts[1:])
    # Still a proper LM: every sentence of the training text gets a finite probability.
    assert math.isfinite(perplexity(pruned, [s.split() for s in TRAIN_TEXT])["ppl"])


def test_map_text_to_vocab_replaces_unknown_words(tmp_path):
    (tmp_path / "in.txt").write_text("A B Q\n\nC R A\n")
    counts = map_text_to_vocab(tmp_path / "in.txt", tmp_path / "out.txt", {"A": 1, "B": 2, "C": 3}, "<UNK>")
    assert counts == (6, 2)
    assert (tmp_path / "out.txt").read_text() == "A B <UNK>\nC <UNK> A\n"


def best_cost(g, lang: Lang, words: list[str]) -> float:
    """Cost of the best path of G that outputs `words` (#0 back-off arcs allowed)."""
    acceptor = kaldifst.make_linear_acceptor(lang.words_to_ids(words))
    zero = lang.word2id["#0"]
    kaldifst.add_self_loops(acceptor, isyms=[zero], osyms=[zero])
    kaldifst.arcsort(acceptor, sort_type="ilabel")
    path = kaldifst.shortest_path(kaldifst.compose(g, acceptor))
    ok, _, olabels, weight = kaldifst.get_linear_symbol_sequence(path)
    assert ok and [o for o in olabels if o != zero] == lang.words_to_ids(words)
    return weight.value


def test_g_fst_path_costs_are_lm_probabilities(tmp_path, abc_lang):
    (tmp_path / "lm.arpa").write_text(ARPA)
    g_path = arpa_to_g(tmp_path / "lm.arpa", abc_lang, tmp_path / "G.fst")
    g = kaldifst.StdVectorFst.read(str(g_path))
    ln10 = math.log(10)
    # "A B": every bigram exists, cost = -ln P = 0.6 ln 10.
    assert best_cost(g, abc_lang, ["A", "B"]) == pytest.approx(0.6 * ln10, abs=1e-3)
    # "A C": p(A|<s>) + bow(A) + p(C) + bow(C) + p(</s>) through two back-off arcs.
    assert best_cost(g, abc_lang, ["A", "C"]) == pytest.approx((0.1 + 0.2 + 0.9 + 0.1 + 1.0) * ln10, abs=1e-3)
    # #0 appears only on the input side of back-off arcs; <s> and </s> become epsilon.
    labels = [(a.ilabel, a.olabel) for s in kaldifst.StateIterator(g) for a in kaldifst.ArcIterator(g, s)]
    zero = abc_lang.word2id["#0"]
    assert any(i == zero and o == 0 for i, o in labels)
    assert all(o != zero for _, o in labels)
    assert not {abc_lang.word2id["<s>"], abc_lang.word2id["</s>"]} & {i for i, _ in labels}


def test_lang_test_is_lang_plus_g(tmp_path, abc_lang):
    (tmp_path / "lm.arpa").write_text(ARPA)
    out = make_lang_test(abc_lang.dir, tmp_path / "lm.arpa", tmp_path / "lang_test")
    copied = {p.relative_to(abc_lang.dir) for p in abc_lang.dir.rglob("*")}
    assert copied <= {p.relative_to(out) for p in out.rglob("*")}
    assert (out / "G.fst").is_file()
    assert Lang.load(out).word2id == abc_lang.word2id
    # A different ARPA at the same path makes a new G; the same one is not rebuilt.
    first = (out / "G.fst").read_bytes()
    make_lang_test(abc_lang.dir, tmp_path / "lm.arpa", out)
    assert (out / "G.fst").read_bytes() == first
    (tmp_path / "lm.arpa").write_text(ARPA.replace("-0.2\tA B", "-0.9\tA B"))
    make_lang_test(abc_lang.dir, tmp_path / "lm.arpa", out)
    assert (out / "G.fst").read_bytes() != first


def test_train_lm_cli_writes_arpa_lang_test_and_dev_perplexity(tmp_path, abc_lang, capsys):
    from asr_kd.bin.train_lm import main
    from asr_kd.utils.io import read_json

    (tmp_path / "lm-text.txt").write_text("\n".join(TRAIN_TEXT + ["A Q B"]) + "\n")
    (tmp_path / "dev.txt").write_text("utt1 A B C\nutt2 C A\n")
    rc = main(["--lang-dir", str(abc_lang.dir), "--lm-dir", str(tmp_path / "lm"), "--text",
               str(tmp_path / "lm-text.txt"), "--dev-text", str(tmp_path / "dev.txt"), "--dev-has-ids"])
    assert rc == 0
    info = read_json(tmp_path / "lm" / "info.json")
    assert info["train_words"] == sum(len(s.split()) for s in TRAIN_TEXT) + 3 and info["train_oov_words"] == 1
    assert "<UNK>" in (tmp_path / "lm" / "lm_text.txt").read_text()
    assert info["full_dev"]["num_sentences"] == 2 and info["full_dev"]["num_scored_tokens"] == 5 + 2
    assert 1.0 < info["full_dev"]["ppl"] < 10.0
    # G comes from the pruned LM: same unigrams, no more higher-order n-grams than the full one.
    full, pruned = info["full_ngram_counts"], info["g_ngram_counts"]
    assert pruned[0] == full[0] and all(p <= f for p, f in zip(pruned, full))
    assert Path(info["g_arpa"]).name == "lm_3gram_prune1e-06.arpa"
    assert (tmp_path / "lang_test" / "G.fst").is_file() and (tmp_path / "lang_test" / "L_disambig.fst").is_file()

    capsys.readouterr()
    (tmp_path / "bad.arpa").write_text(ARPA.replace("-0.2\tA B", "-0.2 A B junk"))
    rc = main(["--lang-dir", str(abc_lang.dir), "--lm-dir", str(tmp_path / "lm2"),
               "--arpa", str(tmp_path / "bad.arpa")])
    assert rc == 2
    assert re.search(r"bad.arpa:14:", capsys.readouterr().err.strip().splitlines()[-1])
