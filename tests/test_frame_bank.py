"""Frame bank: building from aligned lhotse cuts, splicing on the device, bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_kd.bin.build_frame_bank import main as build_frame_bank_main
from asr_kd.data.cmvn import CmvnStats
from asr_kd.data.frame_bank import UNLABELLED, FrameBank
from asr_kd.utils.errors import InputError

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "a journey of a thousand miles begins with a single step",
    "all that glitters is not gold",
    "the early bird catches the worm",
    "every cloud has a silver lining",
    "actions speak louder than words",
    "knowledge is power and time is money",
]
VOICES = ["en-us", "en", "en-sc"]
NUM_CLASSES = 8


def learnable_labels(feats: np.ndarray) -> np.ndarray:
    """A label each frame's context window determines: loudest of 4 mel bands at t, and whether the
    mean energy rises from t to t+2 (t+2 clamped to the last frame, as splicing does)."""
    band = feats.reshape(len(feats), 4, -1).mean(axis=2).argmax(axis=1)
    energy = feats.mean(axis=1)
    ahead = energy[np.minimum(np.arange(len(feats)) + 2, len(feats) - 1)]
    return (band * 2 + (ahead > energy + 0.5)).astype(np.int32)


def make_aligned_cuts(root: Path, num_utts: int, offset: int = 0):
    """Cuts of espeak-ng speech with 40-d lhotse fbank and a `pdf_ids` TemporalArray (NumpyHdf5Writer)."""
    from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, NumpyHdf5Writer, Recording, RecordingSet

    root.mkdir(parents=True, exist_ok=True)
    recordings = []
    for i in range(offset, offset + num_utts):
        wav = root / f"utt{i:03d}.wav"
        raw = root / f"utt{i:03d}.22k.wav"
        subprocess.run(["espeak-ng", "-v", VOICES[i % len(VOICES)], "-s", str(150 + 10 * (i % 5)),
                        "-w", str(raw), SENTENCES[i % len(SENTENCES)]], check=True)
        subprocess.run(["sox", "-R", str(raw), "-r", "16000", str(wav)], check=True)  # LibriSpeech's rate; repeatable
        recordings.append(Recording.from_file(wav, recording_id=f"utt{i:03d}"))
    cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings(recordings))
    cuts = cuts.compute_and_store_features(Fbank(FbankConfig(num_mel_bins=40)), storage_path=root / "fbank",
                                           num_jobs=1, storage_type=LilcomChunkyWriter)
    out = []
    with NumpyHdf5Writer(root / "ali") as writer:
        for cut in cuts:
            labels = learnable_labels(cut.load_features())
            cut.pdf_ids = writer.store_array(cut.id, labels, frame_shift=0.01, temporal_dim=0)
            out.append(cut)
    cuts = CutSet.from_cuts(out)
    cuts.to_file(root / "cuts.jsonl.gz")
    return cuts


def cmvn_of(cuts) -> CmvnStats:
    """Global CMVN stats of the cuts' features."""
    feats = np.concatenate([c.load_features() for c in cuts])
    return CmvnStats(feats.mean(axis=0).astype(np.float32), feats.std(axis=0).astype(np.float32), len(feats))


@pytest.fixture(scope="module")
def cuts(tmp_path_factory):
    return make_aligned_cuts(tmp_path_factory.mktemp("speech"), 6)


def naive_window(utt_feats: np.ndarray, t: int, left: int, right: int) -> np.ndarray:
    """Window of frame t by an explicit per-offset loop with edge repetition."""
    rows = []
    for k in range(-left, right + 1):
        rows.append(utt_feats[min(max(t + k, 0), len(utt_feats) - 1)])
    return np.stack(rows)


def test_bank_holds_cmvn_features_and_labels_of_every_cut(cuts, tmp_path):
    feats = [c.load_features() for c in cuts]
    cmvn = cmvn_of(cuts)
    bank = FrameBank.build(cuts, tmp_path / "bank", cmvn=cmvn, num_classes=NUM_CLASSES)
    assert bank.num_frames == sum(len(f) for f in feats)
    assert bank.num_utterances == len(feats) and bank.cut_ids == [c.id for c in cuts]
    for u, (cut, f) in enumerate(zip(cuts, feats)):
        got_feats, got_labels = bank.utterance(u)
        np.testing.assert_allclose(got_feats, cmvn.apply(f), atol=2e-3, rtol=1e-3)  # fp16 storage
        np.testing.assert_array_equal(got_labels, cut.load_custom("pdf_ids"))
    manifest = json.loads((tmp_path / "bank" / "manifest.json").read_text())
    assert manifest["num_frames"] == bank.num_frames and manifest["feat_dim"] == 40
    assert manifest["num_classes"] == NUM_CLASSES and manifest["checksum"].startswith("sha256:")
    assert manifest["cmvn"]["mean"] == pytest.approx(cmvn.mean.tolist(), rel=1e-6)
    # The memory map is read-only on disk even though the tensor is writable.
    assert isinstance(np.load(tmp_path / "bank" / "feats.npy", mmap_mode="r"), np.memmap)


def test_splice_matches_naive_loop_and_never_crosses_utterances(cuts, tmp_path):
    bank = FrameBank.build(cuts, tmp_path / "bank")
    left, right = 7, 3
    offsets = bank.utt_offsets.numpy()
    idx = np.concatenate([np.arange(bank.num_frames)[:: 37],  # scattered frames
                          offsets[:-1], offsets[1:] - 1,  # first and last frame of every utterance
                          offsets[1:-1] - 2, offsets[1:-1] + 1])  # near the boundaries
    got = bank.splice(torch.from_numpy(idx), left, right).float().numpy()
    for row, i in enumerate(idx):
        u = np.searchsorted(offsets, i, side="right") - 1
        utt_feats, _ = bank.utterance(u)
        expected = naive_window(utt_feats, i - offsets[u], left, right)
        np.testing.assert_array_equal(got[row], expected)



def test_a_flipped_feature_byte_is_named_and_a_version_1_bank_still_loads(cuts, tmp_path):
    bank = FrameBank.build(cuts, tmp_path / "bank")
    assert bank.manifest["content_sha256"] == bank.manifest["checksum"]
    FrameBank.load(tmp_path / "bank")
    feats_path = tmp_path / "bank" / "feats.npy"
    raw = bytearray(feats_path.read_bytes())
    raw[-3] ^= 0x01  # the lowest mantissa bit of one fp16 feature
    feats_path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"bank: its arrays \(feats.npy, .*\) do not match manifest.json's "
                                         "content_sha256"):
        FrameBank.load(tmp_path / "bank")
    # The same ids and labels under other features: another checksum, so a soft-target store made for
    # the first bank is refused for this one.
    rebuilt = FrameBank.build(cuts, tmp_path / "other", cmvn=cmvn_of(cuts))
    assert rebuilt.manifest["checksum"] != bank.manifest["checksum"]
    # A bank written before the features were hashed (version 1, no content_sha256) is read as it is.
    manifest = json.loads((tmp_path / "bank" / "manifest.json").read_text())
    del manifest["content_sha256"]
    manifest["version"] = 1
    (tmp_path / "bank" / "manifest.json").write_text(json.dumps(manifest))
    assert FrameBank.load(tmp_path / "bank").num_frames == bank.num_frames

def test_build_is_skipped_when_complete_and_checksum_is_deterministic(cuts, tmp_path):
    a = FrameBank.build(cuts, tmp_path / "a")
    mtime = (tmp_path / "a" / "feats.npy").stat().st_mtime_ns
    FrameBank.build(cuts, tmp_path / "a")
    assert (tmp_path / "a" / "feats.npy").stat().st_mtime_ns == mtime
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    b = FrameBank.build(tmp_path / "cuts.jsonl.gz", tmp_path / "b")  # from a manifest path this time
    assert a.manifest["checksum"] == b.manifest["checksum"]
    assert b.manifest["source_cuts"] == str(tmp_path / "cuts.jsonl.gz")
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary directories left behind


def _with_labels(cut, root: Path, labels: np.ndarray):
    from lhotse import NumpyHdf5Writer

    with NumpyHdf5Writer(root / f"bad-{cut.id}") as writer:
        cut = cut.with_custom("pdf_ids", writer.store_array(cut.id, labels, frame_shift=0.01, temporal_dim=0))
    return cut


def test_alignment_length_mismatch_names_the_cut(cuts, tmp_path):
    bad = _with_labels(cuts[1], tmp_path, np.zeros(cuts[1].num_frames - 3, dtype=np.int32))
    with pytest.raises(InputError, match=f"cut {bad.id}: alignment has {cuts[1].num_frames - 3} frames"):
        FrameBank.build([cuts[0], bad], tmp_path / "bank")
    assert not (tmp_path / "bank").exists()


def test_labels_outside_the_classes_are_rejected(cuts, tmp_path):
    with pytest.raises(InputError, match=f"cut {cuts[0].id}: label 7 outside \\[0, 5\\)"):
        FrameBank.build(cuts, tmp_path / "bank", num_classes=5)
    bad = _with_labels(cuts[0], tmp_path, np.full(cuts[0].num_frames, -1, dtype=np.int32))
    with pytest.raises(InputError, match="label -1 outside"):
        FrameBank.build([bad], tmp_path / "bank2")


def test_nan_features_and_empty_split_are_rejected(tmp_path):
    feats = [np.zeros((10, 40), np.float32), np.zeros((8, 40), np.float32)]
    feats[1][3, 5] = np.nan
    labels = [np.zeros(10, np.int32), np.zeros(8, np.int32)]
    with pytest.raises(InputError, match="cut b: features contain NaN"):
        FrameBank.from_arrays(feats, labels, ["a", "b"], tmp_path / "bank")
    feats[1][3, 5] = 1e6  # beyond fp16 range: would become inf in the store
    with pytest.raises(InputError, match="cut b: features contain NaN or inf"):
        FrameBank.from_arrays(feats, labels, ["a", "b"], tmp_path / "bank")
    with pytest.raises(InputError, match="empty split"):
        FrameBank.build([], tmp_path / "bank")
    with pytest.raises(InputError, match="not a frame bank"):
        FrameBank.load(tmp_path / "bank")


def test_unlabelled_cuts_follow_the_labelled_ones_without_labels(cuts, tmp_path):
    from lhotse.utils import fastcopy

    labelled, unlabelled = list(cuts)[:4], list(cuts)[4:]
    cmvn = cmvn_of(cuts)
    bank = FrameBank.build(labelled, tmp_path / "transfer", cmvn=cmvn, num_classes=NUM_CLASSES,
                           unlabelled_cuts=[fastcopy(c, custom=None) for c in unlabelled])
    n_lab = sum(c.num_frames for c in labelled)
    assert bank.num_frames == n_lab + sum(c.num_frames for c in unlabelled)
    assert bank.num_labelled_frames == n_lab and bank.cut_ids == [c.id for c in cuts]
    labels = bank.labels.numpy()
    assert (labels[n_lab:] == UNLABELLED).all() and (labels[:n_lab] >= 0).all()
    # The labelled part is the bank those cuts make alone, feature for feature.
    alone = FrameBank.build(labelled, tmp_path / "alone", cmvn=cmvn, num_classes=NUM_CLASSES)
    assert torch.equal(bank.feats[:n_lab], alone.feats) and np.array_equal(labels[:n_lab], alone.labels.numpy())
    assert np.array_equal(bank.class_counts(), alone.class_counts())  # unlabelled frames are nobody's prior
    with pytest.raises(InputError, match="needs num_classes"):
        FrameBank.from_arrays([np.zeros((3, 40), np.float32)], [None], ["u"], tmp_path / "nolabels")


def test_cli_builds_bank_with_num_pdfs_from_info_json(cuts, tmp_path, capsys):
    ali = tmp_path / "ali"
    ali.mkdir()
    cuts.to_file(ali / "cuts_dev.jsonl.gz")
    (ali / "info.json").write_text(json.dumps({"num_pdfs": 11, "system": "tri1", "failed": []}))
    cmvn_of(cuts).save(tmp_path / "cmvn.json")
    assert build_frame_bank_main(["--cuts", str(ali / "cuts_dev.jsonl.gz"), "--cmvn", str(tmp_path / "cmvn.json"),
                                  "--out-dir", str(tmp_path / "bank")]) == 0
    bank = FrameBank.load(tmp_path / "bank")
    assert bank.num_classes == 11 and bank.manifest["cmvn"]["source"] == str(tmp_path / "cmvn.json")
    capsys.readouterr()
    assert build_frame_bank_main(["--cuts", str(tmp_path / "missing.jsonl.gz"), "--out-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.jsonl.gz: no such cuts manifest" in err[0]
