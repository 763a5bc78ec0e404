"""Manifests, fbank features and CMVN on the tiny corpus, and the errors for a broken corpus."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import load_manifest

from asr_kd.bin.prepare_data import main as prepare_data_main
from asr_kd.data.cmvn import CmvnStats, load_speaker_cmvn
from asr_kd.data.features import compute_fbank, cuts_path
from asr_kd.data.prepare import manifest_paths, prepare_manifests
from asr_kd.utils.errors import InputError
from tests.conftest import NEVER_HEARD, PARTS, TRAIN


def _transcript_ids(corpus: Path, part: str) -> set[str]:
    ids = set()
    for trans in (corpus / "LibriSpeech" / part).rglob("*.trans.txt"):
        ids |= {line.split()[0] for line in trans.read_text().splitlines() if line.strip()}
    return ids


@pytest.mark.parametrize("part", PARTS)
def test_every_transcript_line_becomes_one_cut(tiny_corpus, tiny_exp, part):
    cuts = load_manifest(cuts_path(tiny_exp / "data" / "fbank", part))
    assert {c.supervisions[0].id for c in cuts} == _transcript_ids(tiny_corpus, part)


def test_fbank_frame_counts_match_audio_durations(tiny_exp):
    cuts = load_manifest(cuts_path(tiny_exp / "data" / "fbank", TRAIN))
    for cut in cuts:
        source = cut.recording.sources[0].source
        seconds = sf.info(source).frames / 16000
        feats = cut.load_features()
        # 10 ms shift without snip_edges: one frame per started 10 ms (rounded), 40 mel bins.
        assert feats.shape == (int(seconds * 100 + 0.5), 40)
        assert np.all(np.isfinite(feats))


def test_global_cmvn_normalises_the_training_features(tiny_exp):
    fbank = tiny_exp / "data" / "fbank"
    stats = CmvnStats.load(fbank / "cmvn.json")
    feats = np.concatenate([c.load_features() for c in load_manifest(cuts_path(fbank, TRAIN))])
    assert stats.count == feats.shape[0]
    normalised = stats.apply(feats)
    np.testing.assert_allclose(normalised.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(normalised.std(axis=0), 1.0, atol=1e-3)


def _by_speaker(exp: Path, part: str, mode: str) -> tuple[CmvnStats, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Stage 1's input CMVN of `mode`, and each speaker's raw (float64) and normalised frames of `part`."""
    from collections import defaultdict

    from asr_kd.data.cmvn import normalised_features

    fbank = exp / "data" / "fbank"
    stats = CmvnStats.load(fbank / f"cmvn_{mode}.json")
    assert stats.mode == mode
    raw: dict[str, list[np.ndarray]] = defaultdict(list)
    ours: dict[str, list[np.ndarray]] = defaultdict(list)
    for cut, feats in normalised_features(list(load_manifest(cuts_path(fbank, part))), stats):
        raw[cut.supervisions[0].speaker].append(cut.load_features().astype(np.float64))
        ours[cut.supervisions[0].speaker].append(feats)
    assert len(raw) > 1
    return stats, {s: np.concatenate(f) for s, f in raw.items()}, {s: np.concatenate(f) for s, f in ours.items()}


@pytest.mark.parametrize("part", [TRAIN, NEVER_HEARD])
def test_speaker_mvn_gives_every_speaker_zero_mean_and_unit_variance_before_the_global_step(tiny_exp, part):
    """Mode speaker_mvn (apply-cmvn --norm-vars=true per speaker): checked against numpy per speaker, on the
    training part and on a part of speakers never seen in training (the never-heard voices)."""
    stats, raw, ours = _by_speaker(tiny_exp, part, "speaker_mvn")
    for speaker, x in raw.items():
        expected = ((x - x.mean(0)) / x.std(0) - stats.mean) / stats.std
        np.testing.assert_allclose(ours[speaker], expected, atol=1e-4)
    if part == TRAIN:  # after the speaker step the training data is already zero-mean, unit-variance
        np.testing.assert_allclose(stats.mean, 0.0, atol=1e-4)
        np.testing.assert_allclose(stats.std, 1.0, atol=1e-4)


@pytest.mark.parametrize("part", [TRAIN, NEVER_HEARD])
def test_speaker_cepstral_mvn_gives_every_cepstral_coefficient_of_a_speaker_unit_variance(tiny_exp, part):
    """Mode speaker_cepstral_mvn (Kaldi's per-speaker CMVN of MFCCs, in mel bins again): checked against scipy's
    orthonormal DCT per speaker, on the training part and on the never-heard voices."""
    from scipy.fft import dct, idct

    stats, raw, ours = _by_speaker(tiny_exp, part, "speaker_cepstral_mvn")
    for speaker, x in raw.items():
        c = dct(x, type=2, norm="ortho", axis=1)
        speaker_step = idct((c - c.mean(0)) / c.std(0), type=2, norm="ortho", axis=1)
        np.testing.assert_allclose(ours[speaker], (speaker_step - stats.mean) / stats.std, atol=1e-4)
        # Not the same as dividing out each mel bin's deviation, which leaves the cepstra's variances unequal.
        mel_step = (x - x.mean(0)) / x.std(0)
        assert np.ptp(dct(mel_step, type=2, norm="ortho", axis=1).var(0)) > 0.1


@pytest.mark.parametrize("part", [TRAIN, NEVER_HEARD])
def test_speaker_cepstral_match_gives_every_speaker_the_training_speakers_cepstral_deviation(tiny_exp, part):
    """Mode speaker_cepstral_match: each speaker's cepstra lose their mean and are scaled to the training speakers'
    pooled within-speaker deviation (checked against scipy's DCT), so every speaker, never-heard ones included,
    ends with the training voices' cepstral variance profile instead of unit variance."""
    from scipy.fft import dct, idct

    _, train_raw, _ = _by_speaker(tiny_exp, TRAIN, "speaker_cepstral_match")
    train_ceps = [dct(x, type=2, norm="ortho", axis=1) for x in train_raw.values()]
    ref = np.sqrt(sum(len(c) * c.var(0) for c in train_ceps) / sum(len(c) for c in train_ceps))
    stats, raw, ours = _by_speaker(tiny_exp, part, "speaker_cepstral_match")
    np.testing.assert_allclose(stats.cepstral_ref, ref, rtol=1e-6)
    assert np.ptp(ref) > 1.0  # the profile is far from flat: low quefrencies carry most of the variance
    for speaker, x in raw.items():
        c = dct(x, type=2, norm="ortho", axis=1)
        speaker_step = idct((c - c.mean(0)) / c.std(0) * ref, type=2, norm="ortho", axis=1)
        np.testing.assert_allclose(ours[speaker], (speaker_step - stats.mean) / stats.std, atol=1e-4)
        np.testing.assert_allclose(dct(speaker_step, type=2, norm="ortho", axis=1).std(0), ref, rtol=1e-6)


def test_a_speaker_cepstral_match_stats_file_without_its_reference_is_refused(tmp_path):
    path = tmp_path / "cmvn_speaker_cepstral_match.json"
    path.write_text(json.dumps({"mode": "speaker_cepstral_match", "mean": [0.0] * 4, "std": [1.0] * 4, "count": 9}))
    with pytest.raises(InputError, match=f"{path}.*cepstral_ref"):
        CmvnStats.load(path)


def test_per_speaker_cmvn_covers_each_speaker_of_the_part(tiny_exp):
    fbank = tiny_exp / "data" / "fbank"
    cuts = load_manifest(cuts_path(fbank, TRAIN))
    per_speaker = load_speaker_cmvn(fbank / f"cmvn_speakers_{TRAIN}.json")
    assert set(per_speaker) == {c.supervisions[0].speaker for c in cuts}
    assert sum(s.count for s in per_speaker.values()) == sum(c.num_frames for c in cuts)


@pytest.fixture
def one_chapter_corpus(tiny_corpus, tmp_path) -> tuple[Path, list[Path]]:
    """A copy of one training chapter of the tiny corpus, to break in each test."""
    trans = sorted((tiny_corpus / "LibriSpeech" / TRAIN).rglob("*.trans.txt"))[0]
    chapter = trans.parent
    target = tmp_path / "corpus" / "LibriSpeech" / TRAIN / chapter.parent.name / chapter.name
    shutil.copytree(chapter, target)
    return tmp_path / "corpus", sorted(target.glob("*.flac"))


def test_missing_audio_is_an_error_naming_the_file(one_chapter_corpus, tmp_path):
    corpus, flacs = one_chapter_corpus
    flacs[0].unlink()
    with pytest.raises(InputError, match=f"{flacs[0].name}.*missing"):
        prepare_manifests(corpus, tmp_path / "manifests", [TRAIN])


def test_empty_audio_is_an_error_naming_the_file(one_chapter_corpus, tmp_path):
    corpus, flacs = one_chapter_corpus
    flacs[1].write_bytes(b"")
    with pytest.raises(InputError, match=f"{flacs[1].name}.*empty"):
        prepare_manifests(corpus, tmp_path / "manifests", [TRAIN])


def test_garbage_audio_is_an_error_naming_the_file(one_chapter_corpus, tmp_path):
    corpus, flacs = one_chapter_corpus
    flacs[0].write_bytes(b"this is not a flac file" * 100)
    with pytest.raises(InputError, match=f"{flacs[0].name}.*corrupt"):
        prepare_manifests(corpus, tmp_path / "manifests", [TRAIN])


def test_truncated_flac_fails_feature_extraction_naming_the_file(one_chapter_corpus, tmp_path):
    corpus, flacs = one_chapter_corpus
    data = flacs[0].read_bytes()
    flacs[0].write_bytes(data[: len(data) // 2])  # header intact, audio frames cut off
    prepare_manifests(corpus, tmp_path / "manifests", [TRAIN])
    with pytest.raises(InputError, match=f"{flacs[0].name}.*1 of {len(flacs)} cuts lost"):
        compute_fbank(tmp_path / "manifests", tmp_path / "fbank", [TRAIN], num_workers=1)
    assert not cuts_path(tmp_path / "fbank", TRAIN).exists()


def test_skipping_bad_audio_is_counted_not_silent(one_chapter_corpus, tmp_path, caplog):
    corpus, flacs = one_chapter_corpus
    flacs[0].unlink()
    with caplog.at_level(logging.WARNING):
        prepare_manifests(corpus, tmp_path / "manifests", [TRAIN], skip_bad_audio=True)
    assert f"skipping 1 of {len(flacs)} utterances" in caplog.text
    recordings = load_manifest(manifest_paths(tmp_path / "manifests", TRAIN)[0])
    assert len(recordings) == len(flacs) - 1
    assert flacs[0].stem not in set(recordings.ids)


def test_corpus_without_librispeech_parts_is_an_error(tmp_path):
    (tmp_path / "corpus" / "something-else").mkdir(parents=True)
    with pytest.raises(InputError, match="not a LibriSpeech-layout corpus"):
        prepare_manifests(tmp_path / "corpus", tmp_path / "manifests", [TRAIN])


def test_cli_exits_2_with_one_line_on_bad_corpus(tmp_path, capsys):
    code = prepare_data_main(["--corpus-dir", str(tmp_path / "nowhere"), "--exp-dir", str(tmp_path / "exp")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_rerun_skips_finished_parts(one_chapter_corpus, tmp_path):
    corpus, _ = one_chapter_corpus
    prepare_manifests(corpus, tmp_path / "manifests", [TRAIN])
    compute_fbank(tmp_path / "manifests", tmp_path / "fbank", [TRAIN], num_workers=1)
    outputs = [*manifest_paths(tmp_path / "manifests", TRAIN), cuts_path(tmp_path / "fbank", TRAIN)]
    mtimes = [p.stat().st_mtime_ns for p in outputs]
    prepare_manifests(corpus, tmp_path / "manifests", [TRAIN])
    compute_fbank(tmp_path / "manifests", tmp_path / "fbank", [TRAIN], num_workers=1)
    assert [p.stat().st_mtime_ns for p in outputs] == mtimes


def test_manifests_made_from_relative_paths_load_from_any_directory(one_chapter_corpus, tmp_path, monkeypatch):
    # The recipe passes paths relative to where it runs; later stages (and egs/ scripts) run elsewhere.
    monkeypatch.chdir(tmp_path)
    prepare_manifests(Path("corpus"), Path("manifests"), [TRAIN])
    compute_fbank(Path("manifests"), Path("fbank"), [TRAIN], num_workers=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cuts = load_manifest(tmp_path / cuts_path("fbank", TRAIN))
    cut = next(iter(cuts))
    assert cut.load_features().shape == (cut.num_frames, 40)
    assert cut.load_audio().shape[1] > 0


def test_stereo_audio_is_an_error_naming_the_file(one_chapter_corpus, tmp_path):
    corpus, flacs = one_chapter_corpus
    samples, rate = sf.read(flacs[0])
    sf.write(flacs[0], np.stack([samples, samples], axis=1), rate)
    with pytest.raises(InputError, match=f"{flacs[0].name}.*2 channels"):
        prepare_manifests(corpus, tmp_path / "manifests", [TRAIN])


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
def test_audio_at_another_sample_rate_is_an_error_naming_the_file(one_chapter_corpus, tmp_path, rate):
    corpus, flacs = one_chapter_corpus
    samples, _ = sf.read(flacs[1])
    sf.write(flacs[1], samples, rate)  # the same samples, declared at another rate
    with pytest.raises(InputError, match=f"{flacs[1].name}.*sampled at {rate} Hz, expected 16000"):
        prepare_manifests(corpus, tmp_path / "manifests", [TRAIN])


def test_transcript_line_without_words_is_an_error_naming_file_and_line(one_chapter_corpus, tmp_path):
    corpus, flacs = one_chapter_corpus
    trans = next(flacs[0].parent.glob("*.trans.txt"))
    lines = trans.read_text().splitlines()
    lines[1] = lines[1].split()[0]  # the utterance id alone
    trans.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"{trans.name}:2: expected 'SPK-CHAP-NNNN WORDS"):
        prepare_manifests(corpus, tmp_path / "manifests", [TRAIN])
