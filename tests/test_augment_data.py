"""Training-data augmentation through lhotse on real espeak-ng speech aligned by a real GMM system."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, NumpyHdf5Writer, Recording, RecordingSet, load_manifest
from lhotse.utils import fastcopy

from asr_kd.bin.augment_data import main as augment_data_main
from asr_kd.data.augment import AugmentSettings, augment_cuts, make_noise_bank, perturbed_copies, revoiced_copies
from asr_kd.data.voices import revoice_catalog
from asr_kd.gmm.align import AlignOptions
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import read_json

NON_SPEED = ("volume", "noise", "babble", "reverb", "narrowband")
SETTINGS = AugmentSettings(seed=0, num_noises=4)


# The small corpus's systems are fitted to 48 utterances of 4 voices: at Kaldi's beams (10, retry 40) its
# LDA+MLLT tri2 lost 1/6 to 1/2 of the speed copies, its deltas tri1 up to 9 of 48 (the GMMs vary from run
# to run); tri1 at beam 40 aligned them all. (The mini corpus's tri2 aligns all 2 x 2786 at Kaldi's beams.)
SYSTEM = "tri1"
WIDE_BEAMS = AlignOptions(beam=40.0, retry_beam=160.0, num_workers=1)


@pytest.fixture(scope="module")
def ali_cuts(small_gmm_exp) -> Path:
    return small_gmm_exp / "gmm" / SYSTEM / "ali" / "cuts_train-clean-100.jsonl.gz"


@pytest.fixture(scope="module")
def augmented(small_gmm_exp, ali_cuts, tmp_path_factory) -> Path:
    """Every perturbation of the aligned cuts, speed copies aligned by the system that aligned the cuts."""
    out = tmp_path_factory.mktemp("augmented")
    augment_cuts(ali_cuts, out, ["sp0.9", "sp1.1", *NON_SPEED], SETTINGS, gmm_dir=small_gmm_exp / "gmm" / SYSTEM,
                 lang_dir=small_gmm_exp / "lang", align_options=WIDE_BEAMS)
    return out


def copies_of(out: Path, name: str) -> dict[str, object]:
    """Source cut id -> its copy under perturbation `name`."""
    return {c.custom["augment"]["source_cut"]: c for c in load_manifest(out / f"cuts_{name}.jsonl.gz")}


def few_cuts(ali_cuts: Path, out: Path, per_speaker: int = 2) -> Path:
    """A manifest of the first `per_speaker` aligned cuts of every speaker (babble needs several speakers)."""
    taken: dict[str, int] = {}
    keep = []
    for cut in load_manifest(ali_cuts):
        speaker = cut.supervisions[0].speaker
        if taken.get(speaker, 0) < per_speaker:
            taken[speaker] = taken.get(speaker, 0) + 1
            keep.append(cut)
    out.parent.mkdir(parents=True, exist_ok=True)
    CutSet.from_cuts(keep).to_file(out)
    return out


def test_speed_copies_have_their_own_alignment_of_their_length(augmented, ali_cuts):
    sources = {c.id: c for c in load_manifest(ali_cuts)}
    for name, factor in (("sp1.1", 1.1), ("sp0.9", 0.9)):
        copies = copies_of(augmented, name)
        failed = read_json(augmented / f"stats_{name}.json")["failed_alignments"]
        assert len(copies) + len(failed) == len(sources) and len(copies) >= 0.9 * len(sources)
        stretched, unstretched, total = 0, 0, 0
        for source_id, copy in copies.items():
            source = sources[source_id]
            assert abs(copy.num_frames - source.num_frames / factor) <= 1.5
            ali = copy.load_custom("pdf_ids")
            assert len(ali) == copy.num_frames == copy.load_features().shape[0]
            # Aligned anew, the copy's frame t falls where the source's frame t * factor did.
            source_ali = source.load_custom("pdf_ids")
            t = np.arange(len(ali))
            stretched += int((source_ali[np.minimum(np.round(t * factor).astype(int), len(source_ali) - 1)] == ali).sum())
            unstretched += int((source_ali[np.minimum(t, len(source_ali) - 1)] == ali).sum())
            total += len(ali)
        # Measured over 4 runs: 51-60% of the frames agree stretched, 19-25% unstretched.
        assert stretched / total > 0.4 and stretched > 1.6 * unstretched, (name, stretched / total, unstretched / total)
        assert copy.supervisions[0].speaker.endswith(f"_{name}") and copy.id.endswith(f"_{name}")


def test_other_copies_keep_frames_and_alignment_but_not_features(augmented, ali_cuts):
    sources = {c.id: c for c in load_manifest(ali_cuts)}
    for name in NON_SPEED:
        copies = copies_of(augmented, name)
        assert set(copies) == set(sources), name
        changed = []
        for source_id, copy in copies.items():
            source = sources[source_id]
            feats = copy.load_features()
            assert feats.shape == source.load_features().shape
            np.testing.assert_array_equal(copy.load_custom("pdf_ids"), source.load_custom("pdf_ids"))
            changed.append(np.abs(feats - source.load_features()).mean())
        assert min(changed) > 0.05, f"{name}: a copy's features are the source's ({min(changed):.3f})"


def mel_bins_above(hz: float, config: FbankConfig) -> np.ndarray:
    """Indices of the mel filters whose lower edge lies above `hz` (Kaldi's mel scale, the config's range)."""
    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)
    high = config.high_freq if config.high_freq > 0 else config.sampling_rate / 2 + config.high_freq
    low_mel, step = mel(config.low_freq), (mel(high) - mel(config.low_freq)) / (config.num_filters + 1)
    return np.array([i for i in range(config.num_filters) if low_mel + i * step >= mel(hz)])


def test_narrowband_copy_has_no_energy_above_4_khz(augmented, ali_cuts):
    # lhotse's short resampling filter leaves a transition band up to ~4.4 kHz (bin 32: -16 dB).
    high = mel_bins_above(4400.0, FbankConfig(num_filters=40))
    assert len(high) >= 6
    low = np.arange(high[0] - 8)
    sources = {c.id: c for c in load_manifest(ali_cuts)}
    copy_power, source_power = 0.0, 0.0
    for source_id, copy in copies_of(augmented, "narrowband").items():
        feats, source = copy.load_features(), sources[source_id].load_features()
        # Power in the bands above: over 27 dB down in every copy, 33 dB over all; below 3.5 kHz, the same speech.
        assert np.exp(feats[:, high]).sum() < 2e-3 * np.exp(source[:, high]).sum(), copy.id
        assert np.abs(feats[:, low].mean() - source[:, low].mean()) < 0.1, copy.id
        copy_power += np.exp(feats[:, high]).sum()
        source_power += np.exp(source[:, high]).sum()
    assert copy_power < 5e-4 * source_power


@pytest.mark.parametrize("name,snr_range", [("noise", (7.0, 9.0)), ("babble", (14.0, 15.0))])
def test_noise_copies_are_mixed_at_an_snr_in_the_asked_range(ali_cuts, tmp_path, name, snr_range):
    cuts = list(load_manifest(few_cuts(ali_cuts, tmp_path / "cuts.jsonl.gz")))
    settings = AugmentSettings(seed=3, num_noises=4, noise_snr=snr_range, babble_snr=snr_range)
    bank = make_noise_bank(cuts, tmp_path / "noise", settings, [name])
    for source, copy in zip(cuts, perturbed_copies(cuts, name, settings, bank)):
        clean, mixed = source.load_audio()[0], copy.load_audio()[0]
        assert mixed.shape == clean.shape
        snr = 10 * np.log10(np.sum(clean**2) / np.sum((mixed - clean) ** 2))
        assert snr_range[0] - 0.05 <= snr <= snr_range[1] + 0.05, f"{copy.id}: SNR {snr:.2f} dB"
        assert snr == pytest.approx(copy.custom["augment"]["snr"], abs=0.05)
        if name == "babble":
            assert source.supervisions[0].speaker not in bank.babble_speakers[copy.custom["augment"]["noise"]]


def test_seeded_runs_are_identical_and_another_seed_or_setting_is_refused(ali_cuts, tmp_path):
    cuts = few_cuts(ali_cuts, tmp_path / "cuts.jsonl.gz")
    names = ["volume", "noise", "babble", "reverb"]
    runs = {}
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        augment_cuts(cuts, tmp_path / run, names, AugmentSettings(seed=seed, num_noises=4))
        runs[run] = {n: [c.load_features() for c in load_manifest(tmp_path / run / f"cuts_{n}.jsonl.gz")]
                     for n in names}
    for n in names:
        assert all(np.array_equal(x, y) for x, y in zip(runs["a"][n], runs["b"][n])), n
        assert not all(np.array_equal(x, y) for x, y in zip(runs["a"][n], runs["c"][n])), n
    # A rerun keeps the finished copies; other settings into the same directory are refused.
    made = (tmp_path / "a" / "cuts_noise.jsonl.gz").stat().st_mtime_ns
    augment_cuts(cuts, tmp_path / "a", names, AugmentSettings(seed=0, num_noises=4))
    assert (tmp_path / "a" / "cuts_noise.jsonl.gz").stat().st_mtime_ns == made
    with pytest.raises(InputError, match=r"a: its copies were made with other seed .*settings.json"):
        augment_cuts(cuts, tmp_path / "a", names, AugmentSettings(seed=1, num_noises=4))


def test_copies_come_out_in_the_same_order_and_values_whatever_the_number_of_workers(ali_cuts, tmp_path):
    cuts = few_cuts(ali_cuts, tmp_path / "cuts.jsonl.gz")
    made = {}
    for workers in (1, 2):
        out = augment_cuts(cuts, tmp_path / f"w{workers}", ["volume"], AugmentSettings(seed=0), num_workers=workers)
        made[workers] = list(load_manifest(out))
    assert [c.id for c in made[1]] == [c.id for c in made[2]]
    assert [c.id for c in made[1] if "augment" not in (c.custom or {})] == [c.id for c in load_manifest(cuts)]
    assert all(np.array_equal(a.load_features(), b.load_features()) for a, b in zip(made[1], made[2]))


def test_a_given_impulse_response_set_is_used(ali_cuts, tmp_path):
    """A unit impulse as the only RIR: the reverberated copy is the source (up to 16-bit rounding)."""
    cuts = few_cuts(ali_cuts, tmp_path / "cuts.jsonl.gz", per_speaker=1)
    delta = np.zeros(800)
    delta[0] = 0.5
    soundfile.write(tmp_path / "delta.flac", delta, 16000, subtype="PCM_16")
    RecordingSet.from_recordings([Recording.from_file(tmp_path / "delta.flac")]).to_file(tmp_path / "rirs.jsonl.gz")
    augment_cuts(cuts, tmp_path / "out", ["reverb"], SETTINGS, rir_recordings=tmp_path / "rirs.jsonl.gz")
    for source, copy in zip(load_manifest(cuts), load_manifest(tmp_path / "out" / "cuts_reverb.jsonl.gz")):
        assert copy.custom["augment"]["rir"] == "delta"
        np.testing.assert_allclose(copy.load_features(), source.load_features(), atol=0.05)


def test_a_cut_without_recording_is_refused_by_name(ali_cuts, tmp_path, capsys):
    cuts = list(load_manifest(few_cuts(ali_cuts, tmp_path / "few.jsonl.gz", per_speaker=1)))
    cuts[1] = cuts[1].drop_recording()
    CutSet.from_cuts(cuts).to_file(tmp_path / "cuts.jsonl.gz")
    with pytest.raises(InputError, match=rf"cut {cuts[1].id} has no recording"):
        augment_cuts(tmp_path / "cuts.jsonl.gz", tmp_path / "out", ["volume"], SETTINGS)
    assert augment_data_main(["--cuts", str(tmp_path / "cuts.jsonl.gz"), "--out-dir", str(tmp_path / "out"),
                              "--perturbations", "volume"]) == 2
    assert cuts[1].id in capsys.readouterr().err
    with pytest.raises(SystemExit):
        augment_data_main(["--cuts", str(tmp_path / "cuts.jsonl.gz"), "--out-dir", str(tmp_path / "out"),
                           "--noise-snr", "loud"])
    assert augment_data_main(["--cuts", str(tmp_path / "few.jsonl.gz"), "--out-dir", str(tmp_path / "out"),
                              "--perturbations", "sp1.0"]) == 2
    assert "unknown perturbation 'sp1.0'" in capsys.readouterr().err


def test_features_of_another_frame_count_than_the_copies_are_refused_by_name(ali_cuts, tmp_path):
    """Features and alignment at a 20 ms frame shift: the copies' (10 ms) frame counts cannot match."""
    cuts = load_manifest(few_cuts(ali_cuts, tmp_path / "few.jsonl.gz", per_speaker=1)).drop_features()
    coarse = cuts.compute_and_store_features(Fbank(FbankConfig(num_filters=40, frame_shift=0.02)),
                                             storage_path=tmp_path / "feats", storage_type=LilcomChunkyWriter)
    out = []
    with NumpyHdf5Writer(tmp_path / "ali.h5") as writer:
        for cut in coarse:
            out.append(cut.with_custom("pdf_ids", writer.store_array(
                cut.id, np.zeros(cut.num_frames, dtype=np.int32), frame_shift=0.02, temporal_dim=0)))
    CutSet.from_cuts(out).to_file(tmp_path / "cuts.jsonl.gz")
    first = out[0]
    with pytest.raises(InputError, match=rf"cut {first.id}: its volume copy has \d+ frames but "
                                         rf"the cut and its alignment have {first.num_frames}"):
        augment_cuts(tmp_path / "cuts.jsonl.gz", tmp_path / "out", ["volume"], SETTINGS)


def test_subset_of_a_bank_copies_exactly_the_utterances_a_subset_trained_model_sees(ali_cuts, tmp_path, capsys):
    from asr_kd.bin.build_frame_bank import main as build_bank_main
    from asr_kd.data.frame_bank import FrameBank

    assert build_bank_main(["--cuts", str(ali_cuts), "--out-dir", str(tmp_path / "bank")]) == 0
    bank = FrameBank.load(tmp_path / "bank")
    # The trainer's --subset-fraction 0.25 --subset-seed 3 frames, as cut ids: what the copies must be made of.
    frames = bank.subset_frames(0.25, 3)
    offsets = bank.utt_offsets.cpu().numpy()
    seen = {bank.cut_ids[u] for u in np.searchsorted(offsets, frames, side="right") - 1}
    assert 0 < len(seen) < bank.num_utterances
    args = ["--cuts", str(ali_cuts), "--out-dir", str(tmp_path / "out"), "--perturbations", "volume", "noise",
            "--num-noises", "2", "--subset-of", str(tmp_path / "bank"), "--subset-fraction", "0.25", "--subset-seed", "3"]
    assert augment_data_main(args) == 0
    combined = load_manifest(tmp_path / "out" / "cuts_augmented.jsonl.gz")
    assert {c.id for c in combined} == seen | {f"{i}_{p}" for i in seen for p in ("volume", "noise")}
    # Another subset into the same directory is refused; --subset-fraction without a bank names what is missing.
    capsys.readouterr()
    assert augment_data_main([*args[:-1], "4"]) == 2
    assert "its copies were made with other only_cuts" in capsys.readouterr().err
    assert augment_data_main(["--cuts", str(ali_cuts), "--out-dir", str(tmp_path / "x"), "--subset-fraction", "0.5"]) == 2
    assert "--subset-fraction needs --subset-of" in capsys.readouterr().err
    # Ids the cuts do not hold (a bank of another corpus): the error names the manifest and the first missing id.
    with pytest.raises(InputError, match=rf"{re.escape(str(ali_cuts))}: 1 of the 2 cuts asked for are not in it \(first: not-a-cut\)"):
        augment_cuts(ali_cuts, tmp_path / "y", ["volume"], only=[sorted(seen)[0], "not-a-cut"])


def test_revoice_copies_speak_each_speakers_sentences_in_one_new_voice(small_gmm_exp, ali_cuts, tmp_path):
    cuts = few_cuts(ali_cuts, tmp_path / "cuts.jsonl.gz")
    out = tmp_path / "out"
    augment_cuts(cuts, out, ["revoice", "revoice2"], SETTINGS, gmm_dir=small_gmm_exp / "gmm" / SYSTEM,
                 lang_dir=small_gmm_exp / "lang", align_options=WIDE_BEAMS)
    sources = {c.id: c for c in load_manifest(cuts)}
    new_voices = {s.describe() for s in revoice_catalog()}
    voices_of_copy = {}
    for name in ("revoice", "revoice2"):
        copies = copies_of(out, name)
        failed = read_json(out / f"stats_{name}.json")["failed_alignments"]
        assert len(copies) + len(failed) == len(sources) and len(copies) >= 0.75 * len(sources)
        voice_of: dict[str, set[str]] = {}
        for source_id, copy in copies.items():
            source = sources[source_id]
            speaker = source.supervisions[0].speaker
            voice_of.setdefault(speaker, set()).add(copy.custom["augment"]["voice"])
            assert copy.supervisions[0].text == source.supervisions[0].text
            assert copy.supervisions[0].speaker == f"{speaker}_{name}" and copy.id == f"{source_id}_{name}"
            assert Path(copy.recording.sources[0].source).parent == out / f"audio_{name}"
            # Spoken anew and aligned anew: its own length, its own labels, one per frame.
            assert len(copy.load_custom("pdf_ids")) == copy.num_frames == copy.load_features().shape[0]
        # One new voice per speaker, no voice for two speakers.
        assert all(len(v) == 1 for v in voice_of.values()) and len(set().union(*voice_of.values())) == len(voice_of)
        voices_of_copy[name] = set().union(*voice_of.values())
        assert voices_of_copy[name] <= new_voices
        lengths = [(copies[i].num_frames, sources[i].num_frames) for i in copies]
        assert sum(a != b for a, b in lengths) >= len(lengths) // 2, lengths
    assert not voices_of_copy["revoice"] & voices_of_copy["revoice2"]
    # A rerun speaks only what is missing, and speaks it the same.
    audio = sorted((out / "audio_revoice").glob("*.flac"))
    kept, lost = audio[0], audio[1]
    made, samples = kept.stat().st_mtime_ns, soundfile.read(lost)[0]
    lost.unlink()
    (out / "cuts_revoice.jsonl.gz").unlink()
    augment_cuts(cuts, out, ["revoice"], SETTINGS, gmm_dir=small_gmm_exp / "gmm" / SYSTEM,
                 lang_dir=small_gmm_exp / "lang", align_options=WIDE_BEAMS)
    assert kept.stat().st_mtime_ns == made
    np.testing.assert_array_equal(soundfile.read(lost)[0], samples)


def test_revoice_needs_the_gmm_and_a_transcript(ali_cuts, tmp_path, capsys):
    with pytest.raises(InputError, match=r"revoice copies need a GMM system and its lang dir"):
        augment_cuts(ali_cuts, tmp_path / "a", ["revoice"], SETTINGS)
    cuts = list(load_manifest(few_cuts(ali_cuts, tmp_path / "few.jsonl.gz", per_speaker=1)))
    cuts[1] = fastcopy(cuts[1], supervisions=[fastcopy(cuts[1].supervisions[0], text="")])
    with pytest.raises(InputError, match=rf"cut {cuts[1].id}: revoice needs exactly one supervision with text"):
        revoiced_copies(cuts, tmp_path / "audio", seed=0)
    # The first copy is `revoice`; later ones count from 2.
    assert augment_data_main(["--cuts", str(ali_cuts), "--out-dir", str(tmp_path / "b"),
                              "--perturbations", "revoice1"]) == 2
    assert "unknown perturbation 'revoice1'" in capsys.readouterr().err
