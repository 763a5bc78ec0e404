"""Early-stopped distillation: the soft term really stops after --soft-until-epoch, and an
epoch-N.pt checkpoint is a teacher (online, stored, with its priors) equal to the model of that epoch."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from asr_kd.bin.make_soft_targets import main as make_soft_targets_main
from asr_kd.bin.train import main as train_main
from asr_kd.data.frame_bank import FrameBank
from asr_kd.distill.ensemble import EnsembleTeacher
from asr_kd.distill.soft_targets import SoftTargetStore
from asr_kd.models import FrameClassifier
from asr_kd.train.checkpoint import load_train_state
from asr_kd.train.sampler import epoch_permutation
from tests.test_assistants import NUM_CLASSES, TRAIN_OPTIONS, make_banks

SEED, BATCH, T = 3, 128, 2.0  # TRAIN_OPTIONS' --seed and --batch-size; the distillation temperature


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A teacher, 2-epoch and 1-epoch hard-label runs (same seed), a 2-epoch run with the soft term until epoch 1."""
    root = tmp_path_factory.mktemp("early_stop")
    banks = make_banks(root / "bank", seed=1)
    out = {"bank": banks}
    for name, extra in (("teacher", ["--num-epochs", "3", "--model-shape", "2x64"]),
                        ("two_epochs", ["--num-epochs", "2"]), ("one_epoch", ["--num-epochs", "1"])):
        out[name] = root / name
        assert train_main(["--exp-dir", str(out[name]), "--frame-bank", str(banks), *TRAIN_OPTIONS, *extra]) == 0
    out["soft_until1"] = root / "soft_until1"
    assert train_main(["--exp-dir", str(out["soft_until1"]), "--frame-bank", str(banks), *TRAIN_OPTIONS,
                       "--num-epochs", "2", "--teacher-checkpoints", str(out["teacher"] / "final.pt"),
                       "--temperature", str(T), "--hard-weight", "0.5", "--soft-until-epoch", "1"]) == 0
    return out


def _first_loss_of_epoch(exp_dir: Path, epoch: int) -> float:
    """metrics.csv logs every step (--log-interval 1): the first row of `epoch` is its first batch's loss."""
    with open(exp_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) == epoch and not r["dev_acc"]]
    return float(rows[0]["loss"])


def _first_batch(bank: FrameBank, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = epoch_permutation(bank.num_frames, SEED, epoch)[:BATCH]
    return bank.splice(idx, 2, 1), bank.batch_labels(idx)


def test_soft_term_is_off_after_the_switch_epoch(runs):
    bank = FrameBank.load(runs["bank"] / "train")
    teacher = FrameClassifier.load(runs["teacher"] / "final.pt").eval()
    exp = runs["soft_until1"]

    # Epoch 1 trains T^2 * CE(teacher_T, student_T) + 0.5 * CE(labels), from the initial weights.
    x, labels = _first_batch(bank, 1)
    config = FrameClassifier.load(exp / "final.pt").config  # (loading builds a model: it draws random numbers)
    torch.manual_seed(SEED)  # the trainer seeds the initial weights with --seed
    initial = FrameClassifier(config).eval()
    with torch.no_grad():
        z, p = initial(x).float(), F.softmax(teacher(x).float() / T, dim=-1)
        kd = T * T * -(p * F.log_softmax(z / T, dim=-1)).sum(-1).mean() + 0.5 * F.cross_entropy(z, labels)
    assert _first_loss_of_epoch(exp, 1) == pytest.approx(float(kd), rel=1e-4)  # CSV keeps 6 digits

    # Epoch 2 trains plain CE on the labels, from the weights that epoch 1 left (epoch-1.pt).
    x, labels = _first_batch(bank, 2)
    after_epoch1 = FrameClassifier.load(exp / "epoch-1.pt").eval()
    with torch.no_grad():
        z, p = after_epoch1(x).float(), F.softmax(teacher(x).float() / T, dim=-1)
        hard = F.cross_entropy(z, labels)
        kd = T * T * -(p * F.log_softmax(z / T, dim=-1)).sum(-1).mean() + 0.5 * hard
    assert _first_loss_of_epoch(exp, 2) == pytest.approx(float(hard), rel=1e-4)
    assert abs(float(kd) - float(hard)) > 0.1  # the two losses are far apart: the check can tell them apart

    # The settings each epoch trained with are recorded in its checkpoint.
    used = [load_train_state(exp / f"epoch-{e}.pt")[1]["params"]["use_soft"] for e in (1, 2)]
    assert used == [True, False]


def test_epoch_checkpoint_is_a_teacher_equal_to_the_model_of_that_epoch(runs, tmp_path):
    bank = FrameBank.load(runs["bank"] / "train")
    # The 1-epoch run's final.pt is the model the 2-epoch run had after epoch 1 (same seed, constant LR).
    early = runs["two_epochs"] / "epoch-1.pt"
    reference = FrameClassifier.load(runs["one_epoch"] / "final.pt").eval()
    teacher = EnsembleTeacher.load([early])
    x = bank.splice(torch.arange(bank.num_frames), 2, 1)
    with torch.no_grad():
        expected = F.softmax(reference(x).float() / T, dim=-1)
    torch.testing.assert_close(teacher.soft_targets(x, T), expected, rtol=0, atol=1e-6)
    # ... and not the converged model's distribution.
    final = FrameClassifier.load(runs["two_epochs"] / "final.pt").eval()
    with torch.no_grad():
        assert (F.softmax(final(x).float() / T, dim=-1) - expected).abs().max() > 1e-3
    # Priors (for hybrid decoding) travel with the epoch checkpoint: the training labels' frequencies.
    counts = torch.bincount(bank.labels.long(), minlength=NUM_CLASSES).double()
    priors = ((counts + 1) / (counts.sum() + NUM_CLASSES)).log().float()
    torch.testing.assert_close(FrameClassifier.load(early).log_priors, priors, rtol=1e-5, atol=1e-6)

    # make-soft-targets takes it as --teacher, and the store gives back the same distributions.
    assert make_soft_targets_main(["--teacher", str(early), "--frame-bank", str(runs["bank"] / "train"),
                                   "--out-dir", str(tmp_path / "soft"), "--temperature", str(T),
                                   "--top-k", str(NUM_CLASSES), "--device", "cpu", "--amp", "none"]) == 0
    stored = SoftTargetStore.load(tmp_path / "soft").lookup(torch.arange(bank.num_frames))
    torch.testing.assert_close(stored, expected, rtol=0, atol=2e-3)  # fp16 storage
