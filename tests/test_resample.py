"""Decoding audio at any sample rate: parts that are only decoded are resampled to 16 kHz through lhotse."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from lhotse import load_manifest

from asr_kd.bin import decode_nnet
from asr_kd.bin.prepare_data import main as prepare_data_main
from asr_kd.data.features import compute_fbank, cuts_path, resampled_rates
from asr_kd.data.prepare import prepare_manifests
from tests.conftest import TEST, TRAIN

RATES = (8000, 22050, 44100)


def sox_copy(corpus: Path, part: str, rate: int, out: Path, as_part: str | None = None) -> Path:
    """`out`/LibriSpeech/<as_part>: every chapter of the tiny corpus's `part`, its audio converted by sox to `rate`."""
    target = out / "LibriSpeech" / (as_part or part)
    for trans in sorted((corpus / "LibriSpeech" / part).glob("*/*/*.trans.txt")):
        chapter = target / trans.parent.parent.name / trans.parent.name
        chapter.mkdir(parents=True)
        shutil.copy(trans, chapter / trans.name)
        for flac in trans.parent.glob("*.flac"):
            subprocess.run(["sox", "-D", str(flac), "-r", str(rate), str(chapter / flac.name)], check=True)
    return target


@pytest.mark.parametrize("rate", RATES)
def test_decoded_part_at_another_rate_gets_16k_features_of_the_same_length(tiny_corpus, tiny_exp, tmp_path, rate,
                                                                              caplog):
    corpus = sox_copy(tiny_corpus, TEST, rate, tmp_path / "corpus").parent.parent
    caplog.set_level(logging.INFO)
    prepare_manifests(corpus, tmp_path / "manifests", [TEST], resample_parts=[TEST])
    compute_fbank(tmp_path / "manifests", tmp_path / "fbank", [TEST], num_workers=1, resample_parts=[TEST])
    assert "resampling" in caplog.text and f"at {rate} Hz to 16000 Hz" in caplog.text

    cuts = load_manifest(cuts_path(tmp_path / "fbank", TEST)).to_eager()
    reference = {c.id: c for c in load_manifest(cuts_path(tiny_exp / "data" / "fbank", TEST))}  # the 16 kHz originals
    assert sorted(cuts.ids) == sorted(reference) and resampled_rates(cuts) == {rate: len(reference)}
    for cut in cuts:
        ref = reference[cut.id]
        assert cut.sampling_rate == 16000 and cut.recording.sources[0].source.startswith(str(corpus))
        feats = cut.load_features()
        # 100 frames per second of audio, as many as the 16 kHz original has (sox keeps the length within a sample).
        assert abs(feats.shape[0] - ref.num_frames) <= 1 and feats.shape[1] == 40
        assert abs(feats.shape[0] / ref.duration - 100) < 2
        # The same speech: the mel bins below 4 kHz (inside every rate's band) follow the original's.
        n = min(feats.shape[0], ref.num_frames)
        low = slice(0, 28)  # 40 mel bins up to 8 kHz: the first 28 lie below ~3.9 kHz
        corr = np.corrcoef(feats[:n, low].ravel(), ref.load_features()[:n, low].ravel())[0, 1]
        assert corr > 0.9, (cut.id, corr)


def test_training_audio_at_another_rate_is_still_refused(tiny_corpus, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    sox_copy(tiny_corpus, TRAIN, 8000, corpus)
    sox_copy(tiny_corpus, TEST, 8000, corpus)
    argv = ["--corpus-dir", str(corpus), "--exp-dir", str(tmp_path / "exp"), "--parts", TRAIN, TEST,
            "--decode-parts", TEST, "--num-workers", "1"]
    assert prepare_data_main(argv) == 2
    err = capsys.readouterr().err
    assert f"/{TRAIN}/" in err and ".flac" in err and "sampled at 8000 Hz, expected 16000" in err
    assert prepare_data_main([*argv[:-4], "--decode-parts", TRAIN, TEST, "--num-workers", "1"]) == 2
    assert f"--decode-parts {TRAIN}: also a training part" in capsys.readouterr().err


def test_directories_at_44k_and_8k_decode_with_the_resampling_stated(tiny_recipe_exp, tiny_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    test_44k = sox_copy(tiny_corpus, TEST, 44100, corpus)
    test_8k = sox_copy(tiny_corpus, TEST, 8000, corpus, as_part="test-other")
    recorded = json.loads((tiny_recipe_exp / "decode" / "baseline" / "results.json").read_text())
    out = tmp_path / "dec"
    argv = ["--model", str(tiny_recipe_exp / "nnet" / "baseline" / "final.pt"),
            "--graph-dir", str(tiny_recipe_exp / "gmm" / "tri2" / "graph"),
            "--transition-model", str(tiny_recipe_exp / "gmm" / "tri2" / "final.mdl"),
            "--cmvn", str(tiny_recipe_exp / "bank" / "cmvn.json"),
            "--dev-cuts", str(tiny_recipe_exp / "gmm" / "tri2" / "ali" / "cuts_dev-clean.jsonl.gz"),
            "--test-dir", str(test_44k), str(test_8k), "--lm-weights", recorded["lmwt"], "--beam", "8",
            "--max-active", "700", "--decoder", "faster", "--out-dir", str(out), "--device", "cpu"]
    assert decode_nnet.main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    utts = recorded["test"]["data"]["utterances"]
    assert result["test_parts"] == ["test", "test-other"]
    assert result["test"]["data"]["resampled_from_hz"] == {"44100": utts}
    assert result["test-other"]["data"]["resampled_from_hz"] == {"8000": utts}
    assert "resampling" in (out / "log" / "decode.log").read_text()
    for name in ("test", "test-other"):
        assert result[name]["data"]["utterances"] == utts and 0 <= result[name]["wer"]
        assert len((out / name / "scoring" / f"{recorded['lmwt']}.txt").read_text().splitlines()) == utts
    # 44.1 kHz holds all of the 16 kHz band: its WER is the recipe's 16 kHz test WER, give or take a few words.
    assert abs(result["test"]["wer"] - recorded["test"]["wer"]) < 5
