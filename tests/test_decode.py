"""Decoding: HCLG from the lang helper's make_hclg + our tree/model, GMM and score-matrix decodables."""

from __future__ import annotations

import jiwer
import pytest
from lhotse import load_manifest

from asr_kd.decode.decoder import DecodeOptions, decode_utterances, load_graph
from asr_kd.gmm.estimate import pdf_loglikes
from asr_kd.gmm.features import compute_gmm_features
from asr_kd.gmm.system import GmmSystem
from tests.test_gmm import BAD_CUT


@pytest.fixture(scope="module")
def decoding_setup(small_gmm_exp):
    """tri1 of the small corpus, its HCLG with a bigram of the training sentences, the aligned cuts' features."""
    from asr_kd.gmm.graph import make_hclg
    from asr_kd.lang.lm import make_lang_test, train_arpa

    exp = small_gmm_exp
    cuts = load_manifest(exp / "data" / "fbank" / "cuts_train-clean-100.jsonl.gz").filter(lambda c: c.id != BAD_CUT)
    text = exp / "lm_text.txt"
    text.write_text("".join(c.supervisions[0].text + "\n" for c in cuts))
    train_arpa(text, exp / "lm.arpa", order=2)
    make_lang_test(exp / "lang", exp / "lm.arpa", exp / "lang_test")
    refs = {c.id: c.supervisions[0].text for c in cuts}
    setups = {}
    for name in ("tri1", "tri2"):
        sys_dir = exp / "gmm" / name
        make_hclg(exp / "lang_test", sys_dir / "tree", sys_dir / "final.mdl", sys_dir / "graph")
        system = GmmSystem.load(sys_dir)
        feats = compute_gmm_features(cuts, transform=system.transform).feats
        words = {}
        for line in (sys_dir / "graph" / "words.txt").read_text().splitlines():
            w, i = line.split()
            words[int(i)] = w
        setups[name] = (load_graph(sys_dir / "graph" / "HCLG.fst"), system, feats, refs, words)
    return setups


def _wer(result, refs, words) -> float:
    hyps = result.words(words)
    ids = sorted(refs)
    return jiwer.wer([refs[i] for i in ids], [" ".join(hyps[i]) or "<empty>" for i in ids])


@pytest.mark.parametrize("name,decoder", [("tri1", "lattice-faster"), ("tri1", "faster"), ("tri2", "lattice-faster")])
def test_gmm_decoding_of_training_utterances_is_nearly_error_free(decoding_setup, name, decoder):
    graph, system, feats, refs, words = decoding_setup[name]
    assert (system.transform is not None) == (name == "tri2")  # tri2 decodes LDA+MLLT features
    result = decode_utterances(graph, system.transition_model, feats, DecodeOptions(decoder=decoder), am=system.am)
    assert not result.failed
    # A model decoding its own (clean, synthetic) training data through a correct graph makes
    # almost no errors; a graph/model mismatch (wrong tree, pdf or transition-id mapping) gives ~100%.
    assert _wer(result, refs, words) < 0.2
    assert result.audio_seconds == pytest.approx(sum(f.shape[0] for f in feats.values()) * 0.01)
    assert result.rtf > 0


def test_score_matrix_decoding_equals_gmm_decoding(decoding_setup):
    """DecodableCtc over M[:, tid2pdf[1:]] must see exactly the scores DecodableAmDiagGmm computes."""
    graph, system, feats, refs, words = decoding_setup["tri1"]
    some = dict(sorted(feats.items())[:12])
    opts = DecodeOptions(num_workers=1)
    gmm = decode_utterances(graph, system.transition_model, some, opts, am=system.am)
    scores = {u: pdf_loglikes(system.am, f) for u, f in some.items()}
    matrix = decode_utterances(graph, system.transition_model, scores, opts)
    assert matrix.hyps == gmm.hyps
    assert _wer(matrix, {u: refs[u] for u in some}, words) < 0.2


def test_score_matrix_with_too_few_pdfs_is_an_input_error(decoding_setup):
    from asr_kd.utils import InputError

    graph, system, feats, _, _ = decoding_setup["tri1"]
    utt, f = next(iter(feats.items()))
    with pytest.raises(InputError, match="does not cover"):
        decode_utterances(graph, system.transition_model, {utt: pdf_loglikes(system.am, f)[:, :5]},
                          DecodeOptions(num_workers=1))


def test_gmm_sweep_extends_past_an_edge_holding_the_best_weight(decoding_setup, tmp_path):
    from asr_kd.decode.hybrid import HybridSearch, PartInputs, sweep_lm_weights
    from asr_kd.score.wer import compute_wer, weight_beyond_edge

    graph, system, feats, refs, words = decoding_setup["tri1"]
    # With two weights the better one is always at an edge of the sweep.
    search = HybridSearch(graph, system.transition_model, words, DecodeOptions(decoder="faster", num_workers=1),
                          am=system.am)
    dev = PartInputs("dev", {utt: text.split() for utt, text in refs.items()}, lambda: [feats])
    _, fixed = sweep_lm_weights(search, dev, ["40", "44"], tmp_path / "fixed")
    assert sorted(fixed.hyps, key=float) == ["40", "44"]
    best, extended = sweep_lm_weights(search, dev, ["40", "44"], tmp_path / "extended", extend=3)
    tried = sorted(extended.hyps, key=float)
    assert len(tried) > 2 and all(b - a == 4 for a, b in zip(map(float, tried), map(float, tried[1:])))
    assert all((tmp_path / "extended" / "dev" / "scoring" / f"{w}.txt").is_file() for w in tried)
    wers = {w: compute_wer(refs, extended.hyps[w]).wer for w in tried}
    assert wers[best] == min(wers.values())
    assert weight_beyond_edge(tried, best) is None or len(tried) == 5


def test_word_insertion_penalty_trades_insertions_for_deletions_in_the_search(decoding_setup):
    from asr_kd.decode.hybrid import HybridSearch

    graph, system, feats, refs, words = decoding_setup["tri1"]
    some = dict(sorted(feats.items())[:16])
    search = HybridSearch(graph, system.transition_model, words, DecodeOptions(decoder="faster", num_workers=1),
                          am=system.am)
    assert search.with_word_ins_penalty(0.0) is search
    count = {p: sum(map(len, search.with_word_ins_penalty(p).decode(some, "40").hyps.values()))
             for p in (-30.0, 0.0, 30.0)}
    # A penalty per word makes every word dearer: the best paths hold fewer words, a bonus more.
    assert count[30.0] < count[0.0] < count[-30.0], count
    assert search.with_word_ins_penalty(0.0).decode(some, "40").hyps == search.decode(some, "40").hyps


def test_dev_test_decode_sweeps_penalties_and_keeps_the_pair_with_fewest_dev_errors(decoding_setup, tmp_path):
    from asr_kd.decode.hybrid import HybridSearch, PartInputs, SearchConfig, decode_dev_test
    from asr_kd.score.wer import compute_wer, read_transcripts

    graph, system, feats, refs, words = decoding_setup["tri1"]
    ids = sorted(feats)
    dev_feats, test_feats = {u: feats[u] for u in ids[::2]}, {u: feats[u] for u in ids[1::2]}
    split = {u: refs[u].split() for u in ids}
    search = HybridSearch(graph, system.transition_model, words, DecodeOptions(decoder="faster", num_workers=1),
                          am=system.am)
    dev = PartInputs("dev", {u: split[u] for u in dev_feats}, lambda: [dev_feats])
    test = PartInputs("test", {u: split[u] for u in test_feats}, lambda: [test_feats])
    # A bonus of 30 per word inserts words everywhere (the test above); 0 must win on these clean utterances.
    config = SearchConfig(lm_weights=["30", "40"], word_ins_penalties=["-30", "0"])
    result = decode_dev_test(search, dev, [test], tmp_path, config)
    assert set(result["dev_wer_by_penalty"]) == {"-30", "0"}
    best = min((wer, float(p)) for p, by_w in result["dev_wer_by_penalty"].items() for wer in by_w.values())
    assert result["word_ins_penalty"] == "0" and result["dev"]["wer"] == pytest.approx(best[0], abs=1e-3)
    assert result["dev_wer_by_penalty"]["-30"][result["lmwt"]] > result["dev"]["wer"]
    for p in ("-30", "0"):  # each penalty's dev sweep is kept, and the chosen one's is the canonical dev/scoring
        assert all((tmp_path / f"penalty_{p}" / "dev" / "scoring" / f"{w}.txt").is_file()
                   for w in result["dev_wer_by_penalty"][p])
    chosen = tmp_path / "dev" / "scoring" / f"{result['lmwt']}.txt"
    assert chosen.read_text() == (tmp_path / "penalty_0" / "dev" / "scoring" / f"{result['lmwt']}.txt").read_text()
    test_hyps = read_transcripts(tmp_path / "test" / "scoring" / f"{result['lmwt']}.txt")
    assert result["test"]["wer"] == pytest.approx(compute_wer(test.refs, test_hyps).wer, abs=1e-3)


def test_penalty_sweep_extends_above_a_top_holding_the_best(decoding_setup, tmp_path):
    from asr_kd.decode.hybrid import HybridSearch, PartInputs, SearchConfig, sweep_penalties
    from asr_kd.utils import InputError

    graph, system, feats, refs, words = decoding_setup["tri1"]
    dev_feats = dict(sorted(feats.items())[::2])
    dev = PartInputs("dev", {u: refs[u].split() for u in dev_feats}, lambda: [dev_feats])
    search = HybridSearch(graph, system.transition_model, words, DecodeOptions(decoder="faster", num_workers=1),
                          am=system.am)
    # As above, a bonus of 30 per word loses to 0: 0 is the grid's best and its top, so one step more, 30, is tried.
    config = SearchConfig(lm_weights=["30", "40"], word_ins_penalties=["-30", "0"], extend_word_ins_penalties=1)
    choice = sweep_penalties(search, dev, config, tmp_path)
    assert list(choice.wer_by_penalty) == ["-30", "0", "30"]
    assert all((tmp_path / "penalty_30" / "dev" / "scoring" / f"{w}.txt").is_file() for w in ("30", "40"))
    ranked = sorted((min(by_w.values()), float(p), p) for p, by_w in choice.wer_by_penalty.items())
    assert choice.penalty == ranked[0][2]  # the fewest dev errors over the extended grid, ties to the smaller
    no_extension = sweep_penalties(search, dev, SearchConfig(lm_weights=["30", "40"], word_ins_penalties=["-30", "0"]),
                                   tmp_path / "plain")
    assert list(no_extension.wer_by_penalty) == ["-30", "0"]
    with pytest.raises(InputError, match="--extend-word-ins-penalties must be >= 0"):
        sweep_penalties(search, dev, SearchConfig(lm_weights=["40"], word_ins_penalties=["0", "1"],
                                                  extend_word_ins_penalties=-1), tmp_path / "bad")
