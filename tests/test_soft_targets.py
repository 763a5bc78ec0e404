"""Stored top-k soft targets: contents, lookups, manifest checks, resuming, the CLI."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch

from asr_kd.bin import make_soft_targets
from asr_kd.data.frame_bank import FrameBank
from asr_kd.distill.ensemble import EnsembleTeacher
from asr_kd.distill.soft_targets import SoftTargetStore, choose_top_k, measure_fidelity, store_bytes_per_frame
from asr_kd.models import FrameClassifier, FrameClassifierConfig
from asr_kd.utils.errors import InputError

CONFIG = FrameClassifierConfig(num_layers=1, hidden_dim=16, left_context=2, right_context=1,
                               feat_dim=5, num_outputs=13)
LENGTHS = [9, 4, 14]
T = 2.0


def _write(*args, **kwargs) -> SoftTargetStore:
    """SoftTargetStore.write in fp32: these tests compare against fp32 references."""
    return SoftTargetStore.write(*args, amp=False, **kwargs)


@pytest.fixture(scope="module")
def bank_data():
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(n, CONFIG.feat_dim)).astype(np.float32) for n in LENGTHS]
    labels = [rng.integers(0, CONFIG.num_outputs, size=n) for n in LENGTHS]
    return feats, labels


@pytest.fixture()
def bank(bank_data, tmp_path):
    feats, labels = bank_data
    return FrameBank.from_arrays(feats, labels, ["u1", "u2", "u3"], tmp_path / "bank", num_classes=CONFIG.num_outputs)


def _members(seed: int = 0, n: int = 3) -> list[FrameClassifier]:
    out = []
    for m in range(n):
        torch.manual_seed(seed + m)
        out.append(FrameClassifier(CONFIG).eval())
    return out


@pytest.fixture()
def teacher():
    return EnsembleTeacher(_members())


def _teacher_probs_by_utterance(members, feats) -> np.ndarray:
    """(N, C) arithmetic-mean posteriors at T in frame-bank order, via each member's own splicing."""
    rows = []
    for f in feats:
        f16 = torch.from_numpy(f.astype(np.float16).astype(np.float32))  # the bank stores fp16
        rows.append(sum(m.posteriors(f16, temperature=T).double() for m in members) / len(members))
    return torch.cat(rows).numpy()


def test_store_holds_teacher_top_k_in_frame_order(bank, bank_data, teacher, tmp_path):
    k = 4
    store = _write(teacher, bank, tmp_path / "st", temperature=T, k=k, batch_size=6)
    expected = _teacher_probs_by_utterance(teacher.members, bank_data[0])
    order = np.argsort(-expected, axis=1)[:, :k]
    assert store.probs.shape == (sum(LENGTHS), k) and store.probs.dtype == np.float16
    assert store.class_ids.dtype == np.int16  # 13 classes < 32768
    assert np.array_equal(store.class_ids, order)
    assert np.allclose(store.probs, np.take_along_axis(expected, order, 1), rtol=1e-3, atol=1e-4)

    manifest = json.loads((tmp_path / "st" / "manifest.json").read_text())
    assert (manifest["temperature"], manifest["k"], manifest["num_frames"], manifest["num_classes"]) == (T, k, 27, 13)
    assert manifest["teacher"]["mean"] == "arithmetic" and manifest["teacher"]["num_members"] == 3
    assert manifest["frame_bank_checksum"] == bank.manifest["checksum"]
    h = hashlib.sha256(np.load(tmp_path / "st" / "probs.npy").tobytes())
    h.update(np.load(tmp_path / "st" / "class_ids.npy").tobytes())
    h.update(np.load(tmp_path / "st" / "kept_mass.npy").tobytes())
    assert manifest["arrays_sha256"] == h.hexdigest()
    # The kept mass is the teacher's own top-k sum, before the fp16 rounding of the stored values.
    kept = np.take_along_axis(expected, order, 1).sum(1)
    assert np.allclose(store.kept_mass, kept, rtol=1e-5)
    assert manifest["mean_topk_mass"] == pytest.approx(kept.mean(), rel=1e-5)
    assert store_bytes_per_frame(k, 13) == k * 4


def test_lookup_renormalises_the_top_k_mass(bank, bank_data, teacher, tmp_path):
    k = 3
    _write(teacher, bank, tmp_path / "st", temperature=T, k=k)
    store = SoftTargetStore.load(tmp_path / "st", tail="renormalise")
    expected = _teacher_probs_by_utterance(teacher.members, bank_data[0])
    idx = torch.tensor([26, 0, 5, 5, 13])
    dense = store.lookup(idx, "cpu").double().numpy()
    assert dense.shape == (5, 13)
    assert np.allclose(dense.sum(1), 1.0, atol=1e-6)
    for row, i in zip(dense, idx.tolist()):
        top = np.argsort(-expected[i])[:k]
        assert np.count_nonzero(row) == k
        assert np.allclose(row[top], expected[i, top] / expected[i, top].sum(), atol=2e-3)


def test_lookup_with_uniform_tail_spreads_the_dropped_mass(bank, bank_data, teacher, tmp_path):
    k = 3
    _write(teacher, bank, tmp_path / "st", temperature=T, k=k)
    store = SoftTargetStore.load(tmp_path / "st", tail="uniform")
    expected = _teacher_probs_by_utterance(teacher.members, bank_data[0])
    dense = store.lookup(torch.arange(27)).double().numpy()
    assert np.allclose(dense.sum(1), 1.0, atol=1e-6)
    for row, p in zip(dense, expected):
        top = np.argsort(-p)[:k]
        rest = np.setdiff1d(np.arange(13), top)
        assert np.allclose(row[top], p[top], atol=1e-3)
        assert np.allclose(row[rest], (1 - p[top].sum()) / (13 - k), atol=1e-3)


def test_full_k_store_reproduces_the_teacher_distribution(bank, bank_data, teacher, tmp_path):
    store = _write(teacher, bank, tmp_path / "st", temperature=T, k=13)
    expected = _teacher_probs_by_utterance(teacher.members, bank_data[0])
    assert np.allclose(store.lookup(torch.arange(27)).double().numpy(), expected, atol=1e-3)


def test_fidelity_is_exact_for_a_full_store_and_bounds_the_tails(bank, teacher):
    full = measure_fidelity(teacher, bank, T, [CONFIG.num_outputs], device="cpu")[CONFIG.num_outputs]
    assert full["frames"] == sum(LENGTHS) and full["mean_kept_mass"] == pytest.approx(1.0, abs=1e-6)
    for tail in full["tails"].values():
        assert tail["loss_rel_error"] < 1e-3 and tail["mean_l1"] < 1e-3  # fp16 rounding only
    part = measure_fidelity(teacher, bank, T, [3], device="cpu")[3]
    dropped = 1.0 - part["mean_kept_mass"]
    assert dropped > 0.3
    # Renormalising moves exactly twice the dropped mass; the uniform tail never moves more (triangle inequality).
    assert part["tails"]["renormalise"]["mean_l1"] == pytest.approx(2 * dropped, rel=1e-2)
    assert part["tails"]["uniform"]["mean_l1"] <= part["tails"]["renormalise"]["mean_l1"] + 1e-6


def test_the_store_fidelity_record_measures_the_stored_rows_against_the_fp32_teacher(bank, teacher, tmp_path):
    full = CONFIG.num_outputs
    exact = _write(teacher, bank, tmp_path / "fp32", temperature=T, k=full).manifest
    in_bf16 = SoftTargetStore.write(teacher, bank, tmp_path / "bf16", temperature=T, k=full, amp=True).manifest
    assert exact["teacher_precision"] == "fp32" and in_bf16["teacher_precision"] == "bf16 autocast"
    # All classes kept: only the fp16 storage differs from the teacher in fp32, and bf16 arithmetic adds to it.
    assert exact["fidelity"]["tails"]["uniform"]["mean_l1"] < 1e-3
    assert in_bf16["fidelity"]["tails"]["uniform"]["mean_l1"] > exact["fidelity"]["tails"]["uniform"]["mean_l1"]


def test_automatic_k_is_the_smallest_that_keeps_the_loss_within_the_bound(bank, teacher):
    ladder = (1, 2, 4, 8, 40)  # 40 is capped at the 13 classes: a full store, always within any bound
    fidelity = measure_fidelity(teacher, bank, T, [1, 2, 4, 8, 13])
    errors = {k: f["tails"]["uniform"]["loss_rel_error"] for k, f in fidelity.items()}
    bound = (errors[2] + errors[4]) / 2  # between two ladder steps: the answer must be 4
    assert errors[4] < bound < errors[2]
    k, chosen = choose_top_k(teacher, bank, T, max_loss_error=bound, candidates=ladder, min_kept_mass=0.0)
    assert k == 4 and chosen["tails"]["uniform"]["loss_rel_error"] == pytest.approx(errors[4])
    assert choose_top_k(teacher, bank, T, max_loss_error=0.0, candidates=ladder, min_kept_mass=0.0)[0] == 13
    # The kept-mass floor binds too, whatever the loss bound: the trainer refuses stores below its own floor.
    floor = (fidelity[4]["mean_kept_mass"] + fidelity[8]["mean_kept_mass"]) / 2
    assert choose_top_k(teacher, bank, T, max_loss_error=1.0, candidates=ladder, min_kept_mass=floor)[0] == 8


def test_resident_lookup_equals_memory_mapped_lookup(bank, teacher, tmp_path):
    _write(teacher, bank, tmp_path / "st", temperature=T, k=5)
    idx = torch.tensor([3, 1, 26, 3])
    mapped = SoftTargetStore.load(tmp_path / "st").lookup(idx)
    resident = SoftTargetStore.load(tmp_path / "st", device="cpu").lookup(idx)
    assert torch.equal(mapped, resident)


def test_load_names_the_field_that_does_not_match(bank, teacher, tmp_path):
    paths = []
    for i, m in enumerate(_members()):
        paths.append(tmp_path / f"m{i}.pt")
        m.save(paths[-1])
    loaded = EnsembleTeacher.load(paths)
    _write(loaded, bank, tmp_path / "st", temperature=T, k=5)
    ok = SoftTargetStore.load(tmp_path / "st", expect_temperature=T, expect_teacher=list(reversed(paths)),
                              expect_frame_bank_checksum=bank.manifest["checksum"])
    assert ok.k == 5
    with pytest.raises(InputError, match="temperature"):
        SoftTargetStore.load(tmp_path / "st", expect_temperature=1.0)
    with pytest.raises(InputError, match="frame_bank_checksum"):
        SoftTargetStore.load(tmp_path / "st", expect_frame_bank_checksum="sha256:0")
    with pytest.raises(InputError, match="teacher"):
        SoftTargetStore.load(tmp_path / "st", expect_teacher=paths[:2])
    with pytest.raises(InputError, match="teacher"):
        SoftTargetStore.load(tmp_path / "st", expect_teacher=EnsembleTeacher(_members(seed=7)))
    with pytest.raises(InputError, match="teacher"):  # same members, other mean
        SoftTargetStore.load(tmp_path / "st", expect_teacher=EnsembleTeacher.load(paths, mean="geometric"))


def test_checksum_verification_detects_a_corrupted_array(bank, teacher, tmp_path):
    _write(teacher, bank, tmp_path / "st", temperature=T, k=5)
    SoftTargetStore.load(tmp_path / "st", verify_checksum="always")
    probs = np.load(tmp_path / "st" / "probs.npy", mmap_mode="r+")
    probs[10, 0] = np.float16(0.123)
    probs.flush()
    del probs
    with pytest.raises(InputError, match="arrays_sha256"):
        SoftTargetStore.load(tmp_path / "st", verify_checksum="always")



def test_a_store_is_hashed_on_its_first_load_and_again_only_when_its_files_change(bank, teacher, tmp_path):
    _write(teacher, bank, tmp_path / "st", temperature=T, k=5)
    assert (tmp_path / "st" / "verified.json").is_file()  # write records its own arrays as verified
    SoftTargetStore.load(tmp_path / "st")
    probs_path = tmp_path / "st" / "probs.npy"
    raw = bytearray(probs_path.read_bytes())
    raw[-7] ^= 0x40  # one bit of one stored probability
    stat = probs_path.stat()
    probs_path.write_bytes(bytes(raw))
    # A default load hashes the arrays again when a file's size or mtime changed: the flip is named.
    with pytest.raises(InputError, match=r"st: its arrays \(probs.npy, class_ids.npy, kept_mass.npy\) do not match"):
        SoftTargetStore.load(tmp_path / "st")
    # The recorded size and mtime are what "once" trusts: the same flip under the old mtime goes unseen
    # (the price of not hashing every load), and "always" still finds it.
    os.utime(probs_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    SoftTargetStore.load(tmp_path / "st")
    with pytest.raises(InputError, match="arrays_sha256"):
        SoftTargetStore.load(tmp_path / "st", verify_checksum="always")

class _CrashingTeacher(EnsembleTeacher):
    """The same ensemble, but the process 'dies' after a number of forward batches."""

    def __init__(self, models, crash_after: int | None):
        super().__init__(models)
        self.calls, self.crash_after = 0, crash_after

    def member_logits(self, x, frame_idx=None):
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise RuntimeError("simulated crash")
        return super().member_logits(x, frame_idx)


def test_interrupted_write_resumes_from_the_last_chunk(bank, tmp_path):
    # The same write uninterrupted, in the same batches: on some CPUs (AVX2 here) the members' matmuls round
    # the kept mass differently for other batch sizes, so only the same batches can be asked to match bit for bit.
    reference = _write(EnsembleTeacher(_members()), bank, tmp_path / "ref", temperature=T, k=4, batch_size=5,
                       chunk_frames=10)
    # chunks of 10 frames in batches of 5: the crash in the 5th batch loses the second chunk's 1st half.
    crashing = _CrashingTeacher(_members(), crash_after=3)
    with pytest.raises(RuntimeError, match="simulated"):
        _write(crashing, bank, tmp_path / "st", temperature=T, k=4, batch_size=5, chunk_frames=10)
    assert not (tmp_path / "st" / "manifest.json").exists()
    with pytest.raises(InputError, match="manifest"):
        SoftTargetStore.load(tmp_path / "st")
    resumed_teacher = _CrashingTeacher(_members(), crash_after=None)
    store = _write(resumed_teacher, bank, tmp_path / "st", temperature=T, k=4, batch_size=5, chunk_frames=10,
                   fidelity_frames=0)
    assert resumed_teacher.calls == 4  # frames 10..26: batches 10-14, 15-19, 20-24, 25-26
    assert np.array_equal(store.class_ids, reference.class_ids)
    assert np.array_equal(store.probs, reference.probs)
    assert store.manifest["arrays_sha256"] == reference.manifest["arrays_sha256"]
    assert not (tmp_path / "st" / "progress.json").exists()


def test_finished_store_is_reused_and_other_settings_are_refused(bank, tmp_path):
    _write(EnsembleTeacher(_members()), bank, tmp_path / "st", temperature=T, k=4)
    again = _CrashingTeacher(_members(), crash_after=0)  # any forward would raise
    assert _write(again, bank, tmp_path / "st", temperature=T, k=4).k == 4
    with pytest.raises(InputError, match="temperature"):
        _write(again, bank, tmp_path / "st", temperature=5.0, k=4)
    with pytest.raises(InputError, match="top-k"):
        _write(again, bank, tmp_path / "other", temperature=T, k=14)


def test_cli_writes_a_store_that_loads_with_its_teachers(bank, tmp_path, capsys):
    paths = []
    for i, m in enumerate(_members()):
        paths.append(tmp_path / f"m{i}.pt")
        m.save(paths[-1])
    out = tmp_path / "st"
    argv = ["--teacher", *map(str, paths), "--frame-bank", str(bank.directory), "--temperature", "2",
            "--top-k", "6", "--out-dir", str(out), "--device", "cpu", "--mean", "geometric"]
    assert make_soft_targets.main(argv) == 0
    store = SoftTargetStore.load(out, expect_temperature=2.0, expect_teacher=paths,
                                 expect_frame_bank_checksum=bank.manifest["checksum"])
    assert store.manifest["teacher"]["mean"] == "geometric" and store.k == 6
    bad_bank = ["--teacher", str(paths[0]), "--frame-bank", str(tmp_path / "nope"), "--out-dir", str(tmp_path / "x"),
                "--device", "cpu"]
    assert make_soft_targets.main(bad_bank) == 2
    assert "nope" in capsys.readouterr().err
