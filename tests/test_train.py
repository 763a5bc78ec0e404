"""Trainer: learns learnable labels, resumes bit-exactly after SIGKILL, data parallel, NaN stop."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_kd.bin.train import main as train_main
from asr_kd.data.frame_bank import FrameBank
from asr_kd.models import FrameClassifier
from asr_kd.models.frame_classifier import read_checkpoint
from asr_kd.score.frame_accuracy import frame_accuracy_bank, frame_accuracy_cuts
from asr_kd.train.schedule import NewbobSchedule, PlateauSchedule
from asr_kd.utils.errors import InputError
from tests.test_frame_bank import NUM_CLASSES, cmvn_of, make_aligned_cuts

# Pinned to the fp32 CPU path, so that a GPU host or a CPU without bf16 units tests the same thing.
TRAIN_ARGS = ["--model-shape", "tiny", "--batch-size", "128", "--lr", "0.05", "--log-interval", "10",
              "--device", "cpu", "--amp", "none"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    train_cuts = make_aligned_cuts(root / "train", 18)
    dev_cuts = make_aligned_cuts(root / "dev", 6, offset=18)
    cmvn = cmvn_of(train_cuts)
    cmvn.save(root / "cmvn.json")
    FrameBank.build(train_cuts, root / "bank" / "train", cmvn=cmvn, num_classes=NUM_CLASSES)
    FrameBank.build(dev_cuts, root / "bank" / "dev", cmvn=cmvn, num_classes=NUM_CLASSES)
    dev_cuts.to_file(root / "dev_cuts.jsonl.gz")
    return {"root": root, "bank": root / "bank", "dev_cuts": dev_cuts, "cmvn": cmvn}


@pytest.fixture(scope="module")
def single_run(data):
    exp = data["root"] / "exp-single"
    assert train_main(["--exp-dir", str(exp), "--frame-bank", str(data["bank"]), "--num-epochs", "3",
                       *TRAIN_ARGS]) == 0
    return exp


def read_metrics(exp: Path) -> list[dict[str, str]]:
    with open(exp / "metrics.csv") as f:
        return list(csv.DictReader(f))


def read_events(exp: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) per TensorBoard tag of a run, as TensorBoard reads them (restarts purged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(exp / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_events_hold_the_csv(exp: Path) -> dict[str, list[tuple[int, float]]]:
    """Every metrics.csv value is in the events at its step under interval/ or epoch/; returns the events."""
    events = read_events(exp)
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in read_metrics(exp):
        section = "epoch" if row["dev_acc"] else "interval"
        for name, value in row.items():
            if name not in ("epoch", "step") and value:
                expected.setdefault(f"{section}/{name}", []).append((int(row["step"]), float(value)))
    for tag, points in expected.items():
        assert [s for s, _ in events[tag]] == [s for s, _ in points], tag
        assert [v for _, v in events[tag]] == pytest.approx([v for _, v in points], rel=1e-5), tag
    return events


def test_tiny_run_learns_well_above_chance(data, single_run):
    exp = single_run
    for name in ("final.pt", "best.pt", "epoch-1.pt", "epoch-3.pt", "train.log"):
        assert (exp / name).is_file(), name
    epochs = [r for r in read_metrics(exp) if r["dev_acc"]]
    assert [int(r["epoch"]) for r in epochs] == [1, 2, 3]
    dev = FrameBank.load(data["bank"] / "dev")
    chance = np.bincount(dev.labels.numpy()).max() / dev.num_frames  # always guessing the commonest label
    dev_acc = float(epochs[-1]["dev_acc"])
    assert dev_acc > chance + 0.3, (dev_acc, chance)
    model = FrameClassifier.load(exp / "final.pt")
    # Scoring the cuts directly (fp32 features, own splicing) agrees with the trainer's dev figure.
    on_cuts = frame_accuracy_cuts(model, data["dev_cuts"], cmvn=data["cmvn"])
    assert on_cuts.num_frames == dev.num_frames
    assert abs(on_cuts.accuracy - dev_acc) < 0.01
    assert frame_accuracy_bank(model, dev).accuracy == pytest.approx(dev_acc, abs=1e-6)
    # Priors are the smoothed label frequencies of the training bank.
    counts = np.bincount(FrameBank.load(data["bank"] / "train").labels.numpy(), minlength=NUM_CLASSES)
    np.testing.assert_allclose(model.log_priors.numpy(), np.log((counts + 1) / (counts.sum() + NUM_CLASSES)),
                               rtol=1e-5)


def test_tensorboard_events_hold_the_scalars_of_metrics_csv(single_run):
    events = assert_events_hold_the_csv(single_run)
    assert {"interval/loss", "interval/train_acc", "interval/lr", "interval/frames_per_s", "epoch/dev_acc",
            "epoch/dev_ce", "epoch/train_acc", "epoch/lr"} <= events.keys()
    # Without a teacher the loss terms are the hard CE alone, of a fixed sample of training frames per epoch.
    hard_ce = events["epoch/hard_ce"]
    assert [s for s, _ in hard_ce] == [s for s, _ in events["epoch/dev_acc"]]
    assert hard_ce[-1][1] < hard_ce[0][1]
    assert not any(t.endswith(("soft_ce", "soft_kl", "temperature", "hard_weight")) for t in events)


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_sigkilled_run_resumes_to_bit_identical_weights(data, tmp_path, amp):
    # Dropout, Adam and a cosine schedule: RNG, optimizer and schedule state all have to come back,
    # in fp32 and on the CPU's bf16 autocast path alike; the liftered inputs' projection too, which no file holds.
    args = ["--frame-bank", str(data["bank"]), "--num-epochs", "2", "--model-shape", "tiny", "--batch-size", "128",
            "--optimizer", "adam", "--lr", "0.002", "--lr-schedule", "cosine", "--warmup-steps", "5",
            "--dropout", "0.2", "--input-lifter", "13", "--checkpoint-every", "7", "--log-interval", "5",
            "--device", "cpu", "--amp", amp]
    start = time.monotonic()
    straight = _run([sys.executable, "-m", "asr_kd.bin.train", "--exp-dir", str(tmp_path / "a"), *args], tmp_path,
                    timeout=1800)  # only a hang reaches it
    # The killed and the resumed run each do at most the straight run's work: a limit only a hang reaches, on a
    # machine as loaded as it was a moment ago.
    limit = 60 + 20 * (time.monotonic() - start)
    assert straight.returncode == 0, straight.stderr
    # The killed run dies by SIGKILL in place of its 3rd checkpoint (step 21 of 33 in epoch 1), so
    # the steps since the 2nd checkpoint are lost and have to be redone.
    killer = textwrap.dedent(f"""
        import os, signal, sys
        import asr_kd.train.train as t
        from asr_kd.bin.train import main
        real, calls = t.save_checkpoint, []
        def save_or_die(*a, **k):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            real(*a, **k)
        t.save_checkpoint = save_or_die
        sys.exit(main({["--exp-dir", str(tmp_path / "b"), *args]!r}))
    """)
    killed = _run([sys.executable, "-c", killer], tmp_path, timeout=limit)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["train_state"]["state"]
    assert (state["epoch"], state["step_in_epoch"], state["finished"]) == (1, 14, False)
    assert not (tmp_path / "b" / "final.pt").exists()
    resumed = _run([sys.executable, "-m", "asr_kd.bin.train", "--exp-dir", str(tmp_path / "b"), *args], tmp_path,
                   timeout=limit)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    assert read_checkpoint(tmp_path / "b" / "final.pt")["config"]["input_lifter"] == 13
    a = read_checkpoint(tmp_path / "a" / "final.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "b" / "final.pt")["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = lambda rows: [{k: v for k, v in r.items() if k != "frames_per_s"} for r in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "a")) == strip(read_metrics(tmp_path / "b"))
    # TensorBoard drops what the killed run logged past its checkpoint (steps 15, 20): the same curves.
    assert_events_hold_the_csv(tmp_path / "b")
    curves = [{t: v for t, v in read_events(tmp_path / x).items() if not t.endswith("frames_per_s")} for x in "ab"]
    assert curves[0] == curves[1]
    # A third invocation finds the run complete and leaves final.pt alone.
    mtime = (tmp_path / "b" / "final.pt").stat().st_mtime_ns
    assert train_main(["--exp-dir", str(tmp_path / "b"), *args]) == 0
    assert (tmp_path / "b" / "final.pt").stat().st_mtime_ns == mtime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_match_one_process(data, tmp_path):
    # Two ranks of 64 frames see, step by step, exactly the 128 frames of the single run's batch: with
    # gradients averaged across ranks, their weights after the same steps are the single run's up to summation
    # order. The net is tanh, not ReLU: summation order moves a pre-activation by ~1e-8, and one that close to
    # zero flips ReLU's derivative between 0 and 1 for that frame and unit. Measured on one draw of the test
    # audio, seed 1: at step 4 one row of the second layer's weights jumped 1.3e-4 apart (the rest ~3e-8) and
    # the whole net was 6.5e-4 apart by step 10, while 37 other seeds stayed ~3e-8 apart; under tanh all
    # 40 seeds stayed within 9e-8. That flip, not the averaging, made this test fail in ~1 of 4 full suites.
    common = ["--frame-bank", str(data["bank"]), "--num-epochs", "1", *TRAIN_ARGS, "--max-steps", "10", "--seed", "3",
              "--activation", "tanh"]
    assert train_main(["--exp-dir", str(tmp_path / "single"), *common]) == 0
    assert train_main(["--exp-dir", str(tmp_path / "ddp"), *common, "--batch-size", "64", "--world-size", "2",
                       "--master-port", str(_free_port())]) == 0
    ddp = read_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    single = read_checkpoint(tmp_path / "single" / "checkpoint.pt")
    assert ddp["train_state"]["state"]["global_step"] == single["train_state"]["state"]["global_step"] == 10
    torch.manual_seed(3)  # the trainer's initial weights: its --seed, then the model
    initial = FrameClassifier(FrameClassifier.load(tmp_path / "single" / "checkpoint.pt").config).state_dict()
    for k, w in single["state_dict"].items():
        if k == "log_priors":
            continue
        assert not torch.allclose(w, initial[k], atol=1e-3), f"{k} did not move: the comparison would be empty"
        assert torch.allclose(ddp["state_dict"][k], w, rtol=1e-5, atol=1e-6), \
            (k, float((ddp["state_dict"][k] - w).abs().max()))


@pytest.mark.parametrize("amp", ["auto", "none", "bf16"])
def test_train_log_warns_when_a_cpu_without_bf16_units_makes_the_precision_slow(data, tmp_path, amp):
    from tests.test_device import _cpu_has_bf16_units

    exp = tmp_path / amp
    args = [a for a in TRAIN_ARGS if a not in ("--amp", "none")]  # TRAIN_ARGS pins fp32; this test chooses
    assert train_main(["--exp-dir", str(exp), "--frame-bank", str(data["bank"]), *args, "--amp", amp,
                       "--num-epochs", "1", "--max-steps", "1"]) == 0
    train_log = (exp / "train.log").read_text()
    units = _cpu_has_bf16_units()
    assert (" on cpu bf16, " in train_log) is (amp == "bf16" or (amp == "auto" and units))
    assert ("WARNING" in train_log and "this CPU has no bf16 matrix units" in train_log) is (amp == "auto" and not units)
    assert ("WARNING" in train_log and "bf16 is emulated" in train_log) is (amp == "bf16" and not units)


@pytest.mark.parametrize("hard_weight", [0.0, 0.25, 2.0])
def test_trainer_loss_is_t2_soft_ce_plus_hard_weight_times_hard_ce(data, single_run, tmp_path, hard_weight):
    from asr_kd.distill.ensemble import EnsembleTeacher
    from asr_kd.train.sampler import epoch_order

    init, teacher = single_run / "epoch-1.pt", single_run / "final.pt"
    exp = tmp_path / "hw"
    # One step, logged alone: the logged loss is the first batch's, before the update.
    assert train_main(["--exp-dir", str(exp), "--frame-bank", str(data["bank"]), *TRAIN_ARGS, "--num-epochs", "1",
                       "--max-steps", "1", "--log-interval", "1", "--init-from", str(init), "--teacher-checkpoints",
                       str(teacher), "--temperature", "2", "--hard-weight", str(hard_weight)]) == 0
    logged = float(read_metrics(exp)[0]["loss"])
    # By hand: the first batch of epoch 1 (seed 1's shuffle), the init model's logits, the teacher at T = 2.
    bank = FrameBank.load(data["bank"] / "train")
    frames = epoch_order(bank.num_frames, 1, 1, bank.num_frames)[:128]
    student = FrameClassifier.load(init)
    inputs = bank.splice(frames, student.left_context, student.right_context)
    with torch.no_grad():
        z = student(inputs).double()
        p = EnsembleTeacher.load([str(teacher)]).soft_targets(inputs, 2.0).double()
    t = 2.0
    log_q_t = z / t - torch.logsumexp(z / t, dim=-1, keepdim=True)
    log_q = z - torch.logsumexp(z, dim=-1, keepdim=True)
    soft = -t * t * (p * log_q_t).sum(-1).mean()
    hard = -log_q[torch.arange(128), bank.batch_labels(frames)].mean()
    assert soft > 0.1 and hard > 0.1
    assert logged == pytest.approx(float(soft + hard_weight * hard), rel=2e-5)


def test_a_truncated_checkpoint_resumes_from_the_previous_one_to_the_same_weights(data, tmp_path, capsys):
    args = ["--frame-bank", str(data["bank"]), *TRAIN_ARGS, "--num-epochs", "1", "--checkpoint-every", "5"]
    assert train_main(["--exp-dir", str(tmp_path / "a"), *args]) == 0
    exp = tmp_path / "b"
    # Checkpoints at steps 5, 10 and 12 (the stop): checkpoint.pt holds step 12, checkpoint.prev.pt step 10.
    assert train_main(["--exp-dir", str(exp), *args, "--max-steps", "12"]) == 0
    steps = [torch.load(exp / n, weights_only=True)["train_state"]["state"]["global_step"]
             for n in ("checkpoint.pt", "checkpoint.prev.pt")]
    assert steps == [12, 10]
    data_bytes = (exp / "checkpoint.pt").read_bytes()
    (exp / "checkpoint.pt").write_bytes(data_bytes[:len(data_bytes) // 2])  # a torn write
    assert train_main(["--exp-dir", str(exp), *args]) == 0
    log_text = (exp / "train.log").read_text()
    assert f"{exp / 'checkpoint.pt'} is damaged" in log_text
    assert f"resuming from {exp / 'checkpoint.prev.pt'}: epoch 1, step 10" in log_text
    a, b = (read_checkpoint(tmp_path / x / "final.pt")["state_dict"] for x in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Without a previous checkpoint a damaged one is refused, naming it.
    capsys.readouterr()
    (exp / "checkpoint.pt").write_bytes(data_bytes[:100])
    (exp / "checkpoint.prev.pt").unlink()
    assert train_main(["--exp-dir", str(exp), *args]) == 2
    assert str(exp / "checkpoint.pt") in capsys.readouterr().err


@pytest.fixture(scope="module")
def stopped_run(data):
    """A run stopped (resumably) after 2 steps: what a rerun with other settings must refuse to resume."""
    exp = data["root"] / "exp-stopped"
    assert train_main(["--exp-dir", str(exp), "--frame-bank", str(data["bank"]), *TRAIN_ARGS, "--max-steps", "2"]) == 0
    return exp


@pytest.mark.parametrize("case", ["other data", "other model", "init-from shape", "store and teacher",
                                  "temperature 0", "batch too large", "corrupt store", "store classes",
                                  "teacher classes", "dev bank classes", "dev every under early stopping",
                                  "dev every under newbob"])
def test_trainer_refuses_with_status_2_and_a_line_naming_the_problem(data, single_run, stopped_run, tmp_path,
                                                                     capsys, case):
    from asr_kd.distill.ensemble import EnsembleTeacher
    from asr_kd.distill.soft_targets import SoftTargetStore

    exp = tmp_path / "exp"
    teacher = str(single_run / "final.pt")
    ckpt = str(exp / "checkpoint.pt")
    if case in ("other data", "other model"):
        shutil.copytree(stopped_run, exp)
    if case == "corrupt store":
        SoftTargetStore.write(EnsembleTeacher.load([teacher]), FrameBank.load(data["bank"] / "train"),
                              tmp_path / "soft", temperature=2.0, k=NUM_CLASSES, amp=False, fidelity_frames=0)
        probs = tmp_path / "soft" / "probs.npy"
        raw = bytearray(probs.read_bytes())
        raw[-5] ^= 0x10
        probs.write_bytes(bytes(raw))
    if case in ("store classes", "teacher classes"):
        # A teacher of two more classes; its store is of the same frames (so the bank checksum matches).
        wide = FrameClassifier(replace(FrameClassifier.load(teacher).config, num_outputs=NUM_CLASSES + 2))
        wide.save(tmp_path / "wide.pt")
        wide_bank = FrameBank.build(data["root"] / "train" / "cuts.jsonl.gz", tmp_path / "wide-bank", cmvn=data["cmvn"],
                                    num_classes=NUM_CLASSES + 2)
        SoftTargetStore.write(EnsembleTeacher.load([tmp_path / "wide.pt"]), wide_bank, tmp_path / "wide-soft",
                              temperature=2.0, k=4, amp=False, fidelity_frames=0)
    if case == "dev bank classes":
        shutil.copytree(data["bank"] / "train", tmp_path / "bank" / "train")
        FrameBank.build(data["dev_cuts"], tmp_path / "bank" / "dev", cmvn=data["cmvn"], num_classes=NUM_CLASSES + 1)
    extra, expected = {
        "other data": (["--subset-fraction", "0.5"],
                       [f"{ckpt}: cannot resume with other data settings", "subset_fraction", "--no-resume"]),
        "other model": (["--model-shape", "2x64"],
                        [f"{ckpt}: checkpoint was made for another model config", "hidden_dim"]),
        "init-from shape": (["--init-from", teacher, "--model-shape", "2x64"],
                            [f"{teacher}: checkpoint was made for another model config", "hidden_dim: checkpoint 128"]),
        "store and teacher": (["--soft-targets-dir", str(tmp_path / "soft"), "--teacher-checkpoints", teacher],
                              ["either --soft-targets-dir or --teacher-checkpoints"]),
        "temperature 0": (["--teacher-checkpoints", teacher, "--temperature", "0"],
                          ["--temperature must be > 0, got 0"]),
        "batch too large": (["--batch-size", "100000"],
                            [f"{data['bank'] / 'train'}: ", "fewer than one step of 100000", "--batch-size"]),
        "corrupt store": (["--soft-targets-dir", str(tmp_path / "soft"), "--temperature", "2"],
                          [f"{tmp_path / 'soft'}: its arrays", "arrays_sha256"]),
        "store classes": (["--soft-targets-dir", str(tmp_path / "wide-soft"), "--temperature", "2"],
                          [f"{tmp_path / 'wide-soft'}: {NUM_CLASSES + 2} classes, the frame bank has {NUM_CLASSES}"]),
        "teacher classes": (["--teacher-checkpoints", str(tmp_path / "wide.pt")],
                            [f"{tmp_path / 'wide.pt'}: a teacher of {NUM_CLASSES + 2} classes",
                             f"{data['bank'] / 'train'} has {NUM_CLASSES}"]),
        "dev every under early stopping": (["--dev-every", "2", "--lr-schedule", "cosine",
                                            "--early-stopping-patience", "1"],
                                           ["--dev-every 2: must be >= 1, and 1 under early stopping or the newbob"]),
        "dev every under newbob": (["--dev-every", "2"], ["--dev-every 2:", "newbob and plateau schedules (they read dev"]),
        "dev bank classes": (["--frame-bank", str(tmp_path / "bank")],  # the last --frame-bank counts
                             [f"{tmp_path / 'bank' / 'dev'}: feat_dim/num_classes 40/{NUM_CLASSES + 1} differ",
                              f"training bank's 40/{NUM_CLASSES}"]),
    }[case]
    capsys.readouterr()
    assert train_main(["--exp-dir", str(exp), "--frame-bank", str(data["bank"]), *TRAIN_ARGS, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("asr-kd train: error: ")]
    assert errors == err[-1:], err  # one line, the last
    for part in expected:
        assert part in errors[0], (part, errors[0])
    assert not (exp / "final.pt").exists()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data, tmp_path, capsys):
    exp = tmp_path / "nan"
    # A learning rate of 1e8 without clipping blows the loss up to inf/NaN within a few steps.
    rc = train_main(["--exp-dir", str(exp), "--frame-bank", str(data["bank"]), "--num-epochs", "2", "--model-shape",
                     "tiny", "--batch-size", "128", "--lr", "1e8", "--grad-clip", "0", "--log-interval", "1",
                     "--checkpoint-every", "2", "--device", "cpu", "--amp", "none"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "checkpoint.pt kept" in err
    assert not (exp / "final.pt").exists()
    ckpt = torch.load(exp / "checkpoint.pt", weights_only=True)
    assert 2 <= ckpt["train_state"]["state"]["global_step"] < 33
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_students_learn_from_online_and_stored_teachers_alone(data, single_run, tmp_path):
    from asr_kd.distill.ensemble import EnsembleTeacher
    from asr_kd.distill.soft_targets import SoftTargetStore

    dev = FrameBank.load(data["bank"] / "dev")
    chance = np.bincount(dev.labels.numpy()).max() / dev.num_frames
    teacher = [str(single_run / "final.pt")]
    # hard_weight 0: the labels never reach the loss, so what the student knows came from the teacher.
    common = ["--frame-bank", str(data["bank"]), *TRAIN_ARGS, "--hard-weight", "0"]
    assert train_main(["--exp-dir", str(tmp_path / "online"), *common, "--num-epochs", "1",
                       "--teacher-checkpoints", *teacher, "--temperature", "2"]) == 0
    train_bank = FrameBank.load(data["bank"] / "train")
    SoftTargetStore.write(EnsembleTeacher.load(teacher), train_bank, tmp_path / "soft", temperature=2.0,
                          k=train_bank.num_classes, amp=False)
    assert train_main(["--exp-dir", str(tmp_path / "stored"), *common, "--num-epochs", "2", "--soft-targets-dir",
                       str(tmp_path / "soft"), "--temperature", "2"]) == 0
    for name in ("online", "stored"):
        dev_acc = float([r for r in read_metrics(tmp_path / name) if r["dev_acc"]][-1]["dev_acc"])
        assert dev_acc > chance + 0.25, (name, dev_acc, chance)
    # The loss terms, T and hard weight of each epoch go to TensorBoard beside the CSV's columns.
    events = assert_events_hold_the_csv(tmp_path / "stored")
    terms = {t: [v for _, v in events[f"epoch/{t}"]] for t in ("hard_ce", "soft_ce", "soft_kl", "temperature",
                                                              "hard_weight")}
    assert terms["temperature"] == [2.0, 2.0] and terms["hard_weight"] == [0.0, 0.0]
    assert all(0.0 <= kl < ce for kl, ce in zip(terms["soft_kl"], terms["soft_ce"]))  # KL = CE - T^2 H(teacher)


def test_a_resident_store_trains_exactly_as_the_memory_mapped_one(data, single_run, tmp_path):
    """The device-resident lookup path (what CUDA uses) run with the CPU as the device."""
    from asr_kd.distill.ensemble import EnsembleTeacher
    from asr_kd.distill.soft_targets import SoftTargetStore

    train_bank = FrameBank.load(data["bank"] / "train")
    SoftTargetStore.write(EnsembleTeacher.load([str(single_run / "final.pt")]), train_bank, tmp_path / "soft",
                          temperature=2.0, k=4, amp=False)
    weights = {}
    for resident in ("yes", "no"):
        exp = tmp_path / resident
        assert train_main(["--exp-dir", str(exp), "--frame-bank", str(data["bank"]), *TRAIN_ARGS, "--num-epochs", "1",
                           "--soft-targets-dir", str(tmp_path / "soft"), "--temperature", "2",
                           "--resident-soft-targets", resident]) == 0
        weights[resident] = read_checkpoint(exp / "epoch-1.pt")["state_dict"]
        assert ("resident on cpu" if resident == "yes" else "memory-mapped") in (exp / "train.log").read_text()
    for k, w in weights["no"].items():
        assert torch.equal(weights["yes"][k], w), k


def test_a_store_that_keeps_too_little_teacher_mass_is_refused(data, single_run, tmp_path, capsys):
    from asr_kd.distill.ensemble import EnsembleTeacher
    from asr_kd.distill.soft_targets import SoftTargetStore

    train_bank = FrameBank.load(data["bank"] / "train")
    # Top-1 of a temperature-5 teacher: the kept class holds far less than 90% of the mass.
    store = SoftTargetStore.write(EnsembleTeacher.load([str(single_run / "final.pt")]), train_bank,
                                  tmp_path / "soft", temperature=5.0, k=1, amp=False)
    assert store.mean_kept_mass < 0.9
    args = ["--frame-bank", str(data["bank"]), *TRAIN_ARGS, "--num-epochs", "1", "--soft-targets-dir",
            str(tmp_path / "soft"), "--temperature", "5"]
    assert train_main(["--exp-dir", str(tmp_path / "refused"), *args]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "soft") in err and "--top-k" in err and "--teacher-checkpoints" in err
    assert not (tmp_path / "refused" / "final.pt").exists()
    assert train_main(["--exp-dir", str(tmp_path / "accepted"), *args, "--min-kept-mass", "0"]) == 0


def test_a_student_learns_from_unlabelled_frames_with_the_labelled_sets_budget(data, single_run, tmp_path, capsys):
    from lhotse.utils import fastcopy

    from asr_kd.distill.ensemble import EnsembleTeacher
    from asr_kd.distill.soft_targets import SoftTargetStore

    train_cuts = list(make_aligned_cuts(tmp_path / "more", 6, offset=40))
    labelled = FrameBank.load(data["bank"] / "train")
    transfer = FrameBank.build(data["root"] / "train" / "cuts.jsonl.gz", tmp_path / "bank" / "transfer", cmvn=data["cmvn"],
                               num_classes=NUM_CLASSES, unlabelled_cuts=[fastcopy(c, custom=None) for c in train_cuts])
    assert transfer.num_labelled_frames == labelled.num_frames < transfer.num_frames
    SoftTargetStore.write(EnsembleTeacher.load([str(single_run / "final.pt")]), transfer, tmp_path / "soft",
                          temperature=2.0, k=NUM_CLASSES, amp=False)
    args = ["--train-bank", str(tmp_path / "bank" / "transfer"), "--dev-bank", str(data["bank"] / "dev"), *TRAIN_ARGS,
            "--num-epochs", "2"]
    # Without a teacher the unlabelled frames carry nothing: refused, naming the bank.
    assert train_main(["--exp-dir", str(tmp_path / "alone"), *args]) == 2
    assert "have no label" in capsys.readouterr().err
    assert train_main(["--exp-dir", str(tmp_path / "student"), *args, "--soft-targets-dir", str(tmp_path / "soft"),
                       "--temperature", "2", "--frames-per-epoch", str(labelled.num_frames)]) == 0
    params = json.loads((tmp_path / "student" / "params.json").read_text())
    assert params["steps_per_epoch"] == labelled.num_frames // 128  # the labelled set's budget, not the bank's
    epochs = [r for r in read_metrics(tmp_path / "student") if r["dev_acc"]]
    dev = FrameBank.load(data["bank"] / "dev")
    chance = np.bincount(dev.labels.numpy()).max() / dev.num_frames
    assert float(epochs[-1]["dev_acc"]) > chance + 0.25
    assert 0.0 < float(epochs[-1]["train_acc"]) <= 1.0  # over labelled frames only


def test_frame_accuracy_cli_on_cuts_and_on_bank(data, single_run, tmp_path, capsys):
    from asr_kd.bin.frame_accuracy import main as frame_accuracy_main

    model = str(single_run / "final.pt")
    assert frame_accuracy_main(["--model", model, "--frame-bank", str(data["bank"] / "dev"),
                                "--output", str(tmp_path / "acc.json"), "--device", "cpu", "--amp", "none"]) == 0
    on_bank = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert on_bank == json.loads((tmp_path / "acc.json").read_text())
    last = [r for r in read_metrics(single_run) if r["dev_acc"]][-1]
    assert on_bank["accuracy"] == pytest.approx(float(last["dev_acc"]), abs=1e-6)
    assert on_bank["cross_entropy"] == pytest.approx(float(last["dev_ce"]), rel=1e-4)
    assert frame_accuracy_main(["--model", model, "--cuts", str(data["root"] / "dev_cuts.jsonl.gz"),
                                "--cmvn", str(data["root"] / "cmvn.json"), "--device", "cpu", "--amp", "none"]) == 0
    on_cuts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert on_cuts["num_frames"] == on_bank["num_frames"]
    assert abs(on_cuts["accuracy"] - on_bank["accuracy"]) < 0.01  # fp32 features vs the bank's fp16
    assert frame_accuracy_main(["--model", str(tmp_path / "nope.pt"), "--frame-bank", str(data["bank"] / "dev"),
                                "--device", "cpu"]) == 2


def test_subset_is_seeded_whole_utterances(data):
    bank = FrameBank.load(data["bank"] / "train")
    a = bank.subset_frames(1 / 3, seed=5)
    assert np.array_equal(a, bank.subset_frames(1 / 3, seed=5))
    assert not np.array_equal(a, bank.subset_frames(1 / 3, seed=6))
    utts = np.unique(bank.utterance_of(torch.from_numpy(a)).numpy())
    assert len(utts) == round(bank.num_utterances / 3)
    offsets = bank.utt_offsets.numpy()
    assert len(a) == sum(offsets[u + 1] - offsets[u] for u in utts)  # every frame of each chosen utterance


def test_epochs_of_a_set_larger_than_an_epoch_cover_it_before_repeating():
    from asr_kd.train.sampler import epoch_order, epoch_permutation

    # frames_per_epoch == num: epoch e is pass e, exactly the old shuffle.
    for e in (1, 2, 3):
        assert torch.equal(epoch_order(10, 7, e, 10), epoch_permutation(10, 7, e))
    # 4 frames an epoch over 10: epochs 1-3 walk pass 1 then into pass 2, no frame twice before all were seen.
    walked = torch.cat([epoch_order(10, 7, e, 4) for e in (1, 2, 3)])
    assert sorted(walked[:10].tolist()) == list(range(10))
    assert torch.equal(walked[10:], epoch_permutation(10, 7, 2)[:2])
    assert torch.equal(epoch_order(10, 7, 3, 4), epoch_order(10, 7, 3, 4))  # a function of its arguments only


def test_newbob_keeps_lr_while_gaining_then_halves_and_stops():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = NewbobSchedule(opt, 0.08, start_gain=0.01, end_gain=0.002)
    lrs, stops = [], []
    for acc in [0.30, 0.40, 0.45, 0.455, 0.465, 0.466]:
        stops.append(schedule.epoch_end(acc))
        lrs.append(opt.param_groups[0]["lr"])
    # Gains: first, .10, .05, .005 (< .01: halving starts), .01 (halving goes on), .001 (< .002: stop).
    assert lrs[:5] == [0.08, 0.08, 0.08, 0.04, 0.02]
    assert stops == [False] * 5 + [True]


def test_plateau_halves_only_after_epochs_that_stall_and_stops_at_the_floor():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = PlateauSchedule(opt, 0.08, start_gain=0.01, end_gain=0.002, min_lr=0.02)
    lrs, stops = [], []
    for acc in [0.30, 0.40, 0.405, 0.45, 0.47, 0.44, 0.475, 0.476]:
        stops.append(schedule.epoch_end(acc))
        lrs.append(opt.param_groups[0]["lr"])
    # Gains over the best so far: first, .10, .005 (halve), .045 (keep: newbob would halve again), .02 (keep),
    # -.03 (halve to the floor .02), .005 (at the floor, above end_gain: go on), .001 (at the floor: stop).
    assert lrs[:7] == [0.08, 0.08, 0.04, 0.04, 0.04, 0.02, 0.02]
    assert stops == [False] * 7 + [True]


def test_early_stopping_keeps_the_best_model_as_final(data, tmp_path):
    exp = tmp_path / "es"
    # With lr 0 the dev accuracy can never beat epoch 1, so patience 1 stops after epoch 2 of 5.
    assert train_main(["--exp-dir", str(exp), "--frame-bank", str(data["bank"]), *TRAIN_ARGS, "--lr", "0",
                       "--lr-schedule", "constant", "--num-epochs", "5", "--early-stopping-patience", "1"]) == 0
    assert [int(r["epoch"]) for r in read_metrics(exp) if r["dev_acc"]] == [1, 2]
    final = read_checkpoint(exp / "final.pt")
    assert final["epoch"] == 1 and not (exp / "epoch-3.pt").exists()
    best = read_checkpoint(exp / "best.pt")
    assert all(torch.equal(final["state_dict"][k], best["state_dict"][k]) for k in best["state_dict"])


def test_dev_scored_every_other_epoch_changes_nothing_but_the_epoch_rows(data, tmp_path):
    common = ["--frame-bank", str(data["bank"]), *TRAIN_ARGS, "--num-epochs", "3", "--lr-schedule", "cosine"]
    assert train_main(["--exp-dir", str(tmp_path / "every"), *common]) == 0
    assert train_main(["--exp-dir", str(tmp_path / "second"), *common, "--dev-every", "2"]) == 0
    every, second = (FrameClassifier.load(tmp_path / n / "final.pt").state_dict() for n in ("every", "second"))
    assert all(torch.equal(every[k], second[k]) for k in every)  # scoring dev draws nothing, changes nothing
    rows = {n: [r for r in read_metrics(tmp_path / n) if r["dev_acc"]] for n in ("every", "second")}
    assert [int(r["epoch"]) for r in rows["every"]] == [1, 2, 3]
    assert [int(r["epoch"]) for r in rows["second"]] == [2, 3]  # every 2nd epoch, and the last
    assert [r["dev_acc"] for r in rows["second"]] == [r["dev_acc"] for r in rows["every"][1:]]
    assert "epoch 1: " in (log := (tmp_path / "second" / "train.log").read_text()) and "dev not evaluated" in log


def test_keep_last_epochs_removes_older_epoch_files_and_changes_no_weight(data, tmp_path, capsys):
    common = ["--frame-bank", str(data["bank"]), *TRAIN_ARGS, "--num-epochs", "4", "--lr-schedule", "cosine"]
    assert train_main(["--exp-dir", str(tmp_path / "all"), *common]) == 0
    assert train_main(["--exp-dir", str(tmp_path / "two"), *common, "--keep-last-epochs", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "all").glob("epoch-*.pt")) == [f"epoch-{n}.pt" for n in (1, 2, 3, 4)]
    assert sorted(p.name for p in (tmp_path / "two").glob("epoch-*.pt")) == ["epoch-3.pt", "epoch-4.pt"]
    kept, every = (FrameClassifier.load(tmp_path / n / "final.pt").state_dict() for n in ("two", "all"))
    assert all(torch.equal(kept[k], every[k]) for k in kept)
    capsys.readouterr()
    assert train_main(["--exp-dir", str(tmp_path / "bad"), *common, "--keep-last-epochs", "-1"]) == 2
    assert "--keep-last-epochs -1: must be >= 0" in capsys.readouterr().err


def test_soft_term_switched_off_trains_exactly_like_hard_labels_alone(data, single_run, tmp_path):
    teacher = ["--teacher-checkpoints", str(single_run / "final.pt"), "--temperature", "2"]
    common = ["--frame-bank", str(data["bank"]), *TRAIN_ARGS, "--num-epochs", "1"]
    assert train_main(["--exp-dir", str(tmp_path / "hard"), *common]) == 0
    assert train_main(["--exp-dir", str(tmp_path / "off"), *common, *teacher, "--soft-until-epoch", "0"]) == 0
    assert train_main(["--exp-dir", str(tmp_path / "on"), *common, *teacher]) == 0
    weights = {n: FrameClassifier.load(tmp_path / n / "final.pt").state_dict() for n in ("hard", "off", "on")}
    assert all(torch.equal(weights["hard"][k], weights["off"][k]) for k in weights["hard"])
    assert not all(torch.equal(weights["hard"][k], weights["on"][k]) for k in weights["hard"])


def test_early_stopped_distillation_changes_only_the_epochs_after_the_switch(data, single_run, tmp_path):
    common = ["--frame-bank", str(data["bank"]), *TRAIN_ARGS, "--num-epochs", "2",
              "--teacher-checkpoints", str(single_run / "final.pt"), "--temperature", "2", "--lr-schedule", "constant"]
    assert train_main(["--exp-dir", str(tmp_path / "full"), *common]) == 0
    assert train_main(["--exp-dir", str(tmp_path / "stopped"), *common, "--soft-until-epoch", "1"]) == 0
    epoch1 = [FrameClassifier.load(tmp_path / n / "epoch-1.pt").state_dict() for n in ("full", "stopped")]
    finals = [FrameClassifier.load(tmp_path / n / "final.pt").state_dict() for n in ("full", "stopped")]
    assert all(torch.equal(epoch1[0][k], epoch1[1][k]) for k in epoch1[0])
    assert not all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_temperature_schedule_needs_the_online_teacher(data, tmp_path, capsys):
    code = train_main(["--exp-dir", str(tmp_path / "x"), "--frame-bank", str(data["bank"]), *TRAIN_ARGS,
                       "--soft-targets-dir", str(tmp_path / "soft"), "--temperature-schedule", "linear:5:1:1:3"])
    assert code == 2
    assert "--temperature-schedule needs the online teacher" in capsys.readouterr().err


def test_mix_shares_groups_copies_by_the_suffix_of_their_source_id():
    from asr_kd.train.sampler import parse_mix_shares, utterance_groups

    ids = ["a-1", "a-2", "a-1_revoice", "a-2_revoice2", "a-1_sp0.9", "b_x", "c-3_noise"]
    # b_x has no source "b" in the bank and c-3_noise no "c-3": originals whatever their spelling.
    assert utterance_groups(ids) == ["original", "original", "revoice", "revoice2", "sp0.9", "original", "original"]
    assert parse_mix_shares("original=0.5, revoice=0.25") == {"original": 0.5, "revoice": 0.25}
    for bad in ("original", "original=0", "original=1.5", "original=x", "a=0.6,b=0.6", "a=0.2,a=0.3", ""):
        with pytest.raises(InputError):
            parse_mix_shares(bad)


def test_mixed_epochs_draw_each_groups_share_and_walk_it_before_repeating():
    from asr_kd.train.sampler import MixedEpochs

    groups = np.array(["original"] * 30 + ["noise"] * 50 + ["reverb"] * 120)
    mixed = MixedEpochs(groups, {"original": 0.5}, frames_per_epoch=40, seed=3)
    epochs = [mixed(e) for e in range(1, 5)]
    for order in epochs:
        assert len(order) == 40
        assert (groups[order.numpy()] == "original").sum() == 20  # half of every epoch, though 15% of the frames
    first_two = torch.cat([o[groups[o.numpy()] == "original"] for o in epochs[:2]])
    # 40 originals drawn in two epochs out of 30: pass 1 whole (each once), then 10 of pass 2.
    assert sorted(set(first_two.tolist())) == list(range(30))
    assert sorted(torch.bincount(first_two, minlength=30).tolist()) == [1] * 20 + [2] * 10
    rest = torch.cat([o[groups[o.numpy()] != "original"] for o in epochs]).tolist()
    assert len(set(rest)) == len(rest) == 80  # 80 of the 170 copies, none twice
    assert torch.equal(mixed(2), epochs[1])  # a function of the epoch: a resumed run draws the same frames
    # Shares that round: every epoch still has frames_per_epoch frames.
    odd = MixedEpochs(groups, {"original": 1 / 3, "noise": 1 / 3}, frames_per_epoch=41, seed=3)
    assert len(odd(1)) == 41 and sorted(odd.counts) == [13, 14, 14]
    # All of the epoch to the named groups: the others are never drawn.
    only = MixedEpochs(groups, {"original": 1.0}, frames_per_epoch=40, seed=3)
    assert set(groups[only(1).numpy()]) == {"original"}
    # The class counts an epoch draws (the priors): originals all class 0, copies class 1 or -1 (unlabelled):
    # 20 originals, 20 copies of which 50 / 170 are labelled 1; the bank's own counts would be 30 : 50.
    labels = np.array([0] * 30 + [1] * 50 + [-1] * 120)
    def count(positions: np.ndarray) -> np.ndarray:
        return np.bincount(labels[positions][labels[positions] >= 0], minlength=3)

    np.testing.assert_allclose(mixed.class_counts(count), [20, 20 * 50 / 170, 0])
    with pytest.raises(InputError, match="babble"):
        MixedEpochs(groups, {"babble": 0.5}, frames_per_epoch=40, seed=3)
    with pytest.raises(InputError, match="add up to 1"):
        MixedEpochs(groups, {"original": 0.2, "noise": 0.2, "reverb": 0.2}, 40, seed=3)


def test_mix_shares_decide_what_the_trainer_learns_from_an_augmented_bank(data, tmp_path, capsys):
    # Copies whose labels are all one class off teach the wrong mapping: a model drawing 10% of each epoch from
    # the originals scores far lower on dev than one drawing all of it from them, same bank, same updates.
    train = FrameBank.load(data["bank"] / "train")
    feats, labels, ids = [], [], []
    for u, cut_id in enumerate(train.cut_ids):
        f, y = train.utterance(u)
        feats += [f.astype(np.float32)] * 4
        labels += [y] + [(y + 1) % NUM_CLASSES] * 3
        ids += [cut_id, f"{cut_id}_noise", f"{cut_id}_reverb", f"{cut_id}_narrowband"]
    FrameBank.from_arrays(feats, labels, ids, tmp_path / "augmented", num_classes=NUM_CLASSES)
    args = ["--train-bank", str(tmp_path / "augmented"), "--dev-bank", str(data["bank"] / "dev"), *TRAIN_ARGS,
            "--num-epochs", "3", "--frames-per-epoch", str(train.num_frames)]
    dev_acc = {}
    for share in ("1", "0.1"):
        exp = tmp_path / f"original{share}"
        assert train_main(["--exp-dir", str(exp), *args, "--mix-shares", f"original={share}"]) == 0
        dev_acc[share] = float([r for r in read_metrics(exp) if r["dev_acc"]][-1]["dev_acc"])
        assert json.loads((exp / "params.json").read_text())["mix_shares"] == f"original={share}"
    assert dev_acc["1"] > dev_acc["0.1"] + 0.3, dev_acc
    # The priors are those of what each epoch drew: with originals only, train's own labels, not the bank's mix
    # of train's and the copies' shifted ones.
    originals_only = FrameClassifier(FrameClassifier.load(tmp_path / "original1" / "final.pt").config)
    originals_only.set_priors(train.class_counts())
    np.testing.assert_allclose(FrameClassifier.load(tmp_path / "original1" / "final.pt").log_priors.numpy(),
                               originals_only.log_priors.numpy(), atol=1e-5)
    log_line = [line for line in (tmp_path / "original1" / "train.log").read_text().splitlines() if "by group" in line]
    assert log_line and f"original {train.num_frames} of {train.num_frames}" in log_line[0]
    # Another mix cannot resume a run made with this one; a group the bank lacks is named.
    assert train_main(["--exp-dir", str(tmp_path / "stopped"), *args, "--mix-shares", "original=0.1",
                       "--max-steps", "3"]) == 0
    capsys.readouterr()
    assert train_main(["--exp-dir", str(tmp_path / "stopped"), *args, "--mix-shares", "original=0.5"]) == 2
    assert "mix_shares" in capsys.readouterr().err
    assert train_main(["--exp-dir", str(tmp_path / "babble"), *args, "--mix-shares", "babble=0.5"]) == 2
    err = capsys.readouterr().err
    assert "augmented" in err and "babble" in err and "narrowband" in err
