"""One hybrid decoding path: a GMM and a network decoded through `asr_kd.decode` write the same files and
choose the LM weight by the same rule (fewest dev errors, ties to the smaller weight)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from asr_kd.decode import GmmDecodeConfig, NnetDecodeConfig, SearchConfig, decode_gmm, decode_nnet


def _layout(out: Path, lmwt: str) -> set[str]:
    """The files under a decode's out dir (log/ aside), LM weights in names written <best> or <other>."""
    names = set()
    for path in out.rglob("*"):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not rel.startswith("log/"):
            names.add(re.sub(r"(scoring/(?:wer_)?)([\d.]+)(\.txt)?$",
                             lambda m: f"{m[1]}<{'best' if m[2] == lmwt else 'other'}>{m[3] or ''}", rel))
    return names


def _dev_errors(out: Path) -> dict[str, int]:
    """Dev's errors per LM weight from scoring/wer_<lmwt> (`%WER 60.07 [ 173 / 288, ...`)."""
    return {p.name.removeprefix("wer_"): int(re.match(r"%WER \S+ \[ (\d+) /", p.read_text())[1])
            for p in (out / "scoring").glob("wer_*") if not p.name.startswith("wer_summary")}


def _utterances(path: Path) -> list[str]:
    return [line.split(" ", 1)[0] for line in path.read_text().splitlines()]


def test_a_gmm_and_a_network_decode_into_one_layout_with_one_lm_weight_rule(tiny_recipe_exp, tmp_path):
    exp = tiny_recipe_exp
    recipe_gmm = json.loads((exp / "gmm" / "tri2" / "decode" / "results.json").read_text())
    recipe_nnet = json.loads((exp / "decode" / "baseline" / "results.json").read_text())

    def search(lmwt: str) -> SearchConfig:
        # Two weights a hair apart (the larger first): the searches mostly find the same paths, a tie that must
        # go to the smaller weight.
        return SearchConfig(lm_weights=[float(lmwt) + 0.001, lmwt], beam=8, max_active=700, decoder="faster",
                            num_workers=1)

    gmm = decode_gmm(GmmDecodeConfig(exp_dir=exp, parts=["dev-clean", "test-clean", "test-other"],
                                     out_dir=tmp_path / "gmm", search=search(recipe_gmm["lmwt"])))
    nnet = decode_nnet(NnetDecodeConfig(
        model=[exp / "nnet" / "baseline" / "final.pt"], graph_dir=exp / "gmm" / "tri2" / "graph",
        transition_model=exp / "gmm" / "tri2" / "final.mdl", cmvn=exp / "bank" / "cmvn.json",
        dev_cuts=exp / "gmm" / "tri2" / "ali" / "cuts_dev-clean.jsonl.gz",
        test_cuts=[exp / "gmm" / "tri2" / "ali" / "cuts_test-clean.jsonl.gz",
                   exp / "data" / "fbank" / "cuts_test-other.jsonl.gz"],
        out_dir=tmp_path / "nnet", search=search(recipe_nnet["lmwt"]), device="cpu"))

    layout = _layout(tmp_path / "gmm", gmm["lmwt"])
    assert layout == _layout(tmp_path / "nnet", nnet["lmwt"])
    assert {"dev/scoring/<best>.txt", "dev/scoring/<other>.txt", "test/scoring/<best>.txt",
            "test-other/scoring/<best>.txt", "scoring/wer_<best>", "scoring/wer_<other>", "scoring/per_utt_dev.txt",
            "scoring/per_utt_test-other.txt", "scoring/wer_summary.json", "results.json"} <= layout
    # The same utterance ids (the supervisions'), in Kaldi `text` files of the same form.
    for part in ("dev", "test", "test-other"):
        assert (_utterances(tmp_path / "gmm" / part / "scoring" / f"{gmm['lmwt']}.txt")
                == _utterances(tmp_path / "nnet" / part / "scoring" / f"{nnet['lmwt']}.txt"))
    # The same record: which weight, and per part its WER, errors, data size, failures and speed.
    for result in (gmm, nnet):
        assert {"lmwt", "dev_wer_by_lmwt", "test_parts", "command", "hardware", "search"} <= set(result)
        assert result["test_parts"] == ["test", "test-other"]
        for part in ("dev", "test", "test-other"):
            assert {"wer", "errors", "data", "failed", "search_seconds", "rtf"} <= set(result[part])
    # One rule: the fewest dev errors, ties to the smaller weight (checked on the wer_<lmwt> files).
    for out, result in ((tmp_path / "gmm", gmm), (tmp_path / "nnet", nnet)):
        errors = _dev_errors(out)
        assert len(errors) == 2
        assert result["lmwt"] == min(errors, key=lambda w: (errors[w], float(w)))
        if len(set(errors.values())) == 1:
            assert result["lmwt"] == min(errors, key=float)
