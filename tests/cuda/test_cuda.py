"""The CUDA paths, run for real: collected only where torch sees a CUDA device (tests/conftest.py).

bf16 autocast, fused optimizers, the frame bank and soft-target store resident on the GPU, and the
CUDA generator's state in checkpoints. Small nets on a small learnable bank: each test is seconds.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_kd.bin import make_soft_targets
from asr_kd.bin.train import main as train_main
from asr_kd.data.frame_bank import FrameBank
from asr_kd.distill.soft_targets import SoftTargetStore
from asr_kd.models import FrameClassifier, shape_config
from asr_kd.models.frame_classifier import read_checkpoint
from asr_kd.train.attribute_dict import AttributeDict
from asr_kd.train.train import _make_optimizer

pytestmark = pytest.mark.cuda

CUDA = torch.device("cuda", 0)
NUM_CLASSES, FEAT_DIM = 8, 40
TRAIN = ["--model-shape", "tiny", "--left-context", "2", "--right-context", "1", "--batch-size", "256", "--lr", "0.05",
         "--lr-schedule", "constant", "--log-interval", "5", "--device", "cuda", "--seed", "3"]


@pytest.fixture(scope="module")
def banks(tmp_path_factory) -> Path:
    """train/ and dev/ banks whose frames sit near their class's mean: labels a network can learn."""
    root = tmp_path_factory.mktemp("cuda_banks")
    rng = np.random.default_rng(0)
    means = rng.normal(0, 1.0, size=(NUM_CLASSES, FEAT_DIM)).astype(np.float32)
    for name, num_utts in (("train", 40), ("dev", 8)):
        labels = [np.repeat(rng.integers(0, NUM_CLASSES, size=20), 10).astype(np.int32) for _ in range(num_utts)]
        feats = [means[lab] + rng.normal(0, 1.0, size=(len(lab), FEAT_DIM)).astype(np.float32) for lab in labels]
        FrameBank.from_arrays(feats, labels, [f"{name}-{i}" for i in range(num_utts)], root / name,
                              num_classes=NUM_CLASSES)
    return root


def logged_losses(exp: Path) -> list[float]:
    """The step-interval losses of metrics.csv (rows without dev accuracy), in order."""
    with open(exp / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if not r["dev_acc"]]


def test_bf16_autocast_on_cuda_trains(banks, tmp_path):
    assert train_main(["--exp-dir", str(tmp_path), "--frame-bank", str(banks), *TRAIN, "--num-epochs", "3",
                       "--amp", "bf16"]) == 0
    assert "on cuda:0 bf16" in (tmp_path / "train.log").read_text()
    losses = logged_losses(tmp_path)
    assert losses[-1] < 0.7 * losses[0], losses
    model = FrameClassifier.load(tmp_path / "final.pt").to(CUDA)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert model(torch.randn(4, 4, FEAT_DIM, device=CUDA)).dtype == torch.bfloat16


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fused_optimizers_step_on_cuda_as_the_reference_loop_does(optimizer):
    torch.manual_seed(0)
    model = FrameClassifier(shape_config("tiny", num_outputs=NUM_CLASSES)).to(CUDA)
    reference = FrameClassifier(shape_config("tiny", num_outputs=NUM_CLASSES)).to(CUDA)
    reference.load_state_dict(model.state_dict())
    params = AttributeDict(device=CUDA, optimizer=optimizer, lr=0.01, momentum=0.9, weight_decay=1e-4)
    fused = _make_optimizer(params, model)  # the trainer's own choice on this device
    assert fused.defaults["fused"] is True
    loop = (torch.optim.Adam(reference.parameters(), lr=0.01, weight_decay=1e-4, foreach=False) if optimizer == "adam"
            else torch.optim.SGD(reference.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=False))
    x = torch.randn(64, 26, FEAT_DIM, device=CUDA)
    y = torch.randint(NUM_CLASSES, (64,), device=CUDA)
    for _ in range(3):
        for net, opt in ((model, fused), (reference, loop)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name


def test_frame_bank_and_soft_target_store_live_on_the_gpu(banks, tmp_path):
    bank = FrameBank.load(banks / "train", CUDA)
    assert bank.feats.device == CUDA and bank.labels.device == CUDA
    frames = torch.arange(0, bank.num_frames, 7, device=CUDA)
    windows = bank.splice(frames, 2, 1)
    assert windows.device == CUDA
    assert torch.equal(windows.cpu(), FrameBank.load(banks / "train").splice(frames.cpu(), 2, 1))

    teacher = tmp_path / "teacher"
    assert train_main(["--exp-dir", str(teacher), "--frame-bank", str(banks), *TRAIN, "--num-epochs", "2",
                       "--amp", "none"]) == 0
    store_dir = tmp_path / "soft"
    assert make_soft_targets.main(["--teacher", str(teacher / "final.pt"), "--frame-bank", str(banks / "train"),
                                   "--out-dir", str(store_dir), "--temperature", "2", "--top-k", str(NUM_CLASSES),
                                   "--device", "cuda", "--amp", "none"]) == 0
    resident = SoftTargetStore.load(store_dir, device=CUDA)
    on_gpu = resident.lookup(frames)
    assert on_gpu.device == CUDA
    assert torch.allclose(on_gpu.cpu(), SoftTargetStore.load(store_dir).lookup(frames.cpu()), atol=1e-6)
    # The trainer reads that store on the GPU and learns from it.
    student = tmp_path / "student"
    assert train_main(["--exp-dir", str(student), "--frame-bank", str(banks), *TRAIN, "--num-epochs", "2",
                       "--amp", "bf16", "--soft-targets-dir", str(store_dir), "--temperature", "2"]) == 0
    losses = logged_losses(student)
    assert losses[-1] < losses[0], losses


def test_cuda_rng_state_is_checkpointed_and_a_resumed_run_is_bit_identical(banks, tmp_path):
    # Dropout draws from the CUDA generator: without its state in the checkpoint the resumed masks differ.
    args = ["--frame-bank", str(banks), *TRAIN, "--num-epochs", "2", "--dropout", "0.3", "--optimizer", "adam",
            "--lr", "0.002", "--amp", "bf16", "--checkpoint-every", "5"]
    assert train_main(["--exp-dir", str(tmp_path / "straight"), *args]) == 0
    assert train_main(["--exp-dir", str(tmp_path / "resumed"), *args, "--max-steps", "13"]) == 0
    stopped = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["train_state"]
    assert stopped["state"]["global_step"] == 13 and "cuda" in stopped["rng"][0]
    torch.manual_seed(12345)  # whatever the process's generators hold now, the checkpoint's states win
    torch.cuda.manual_seed_all(12345)
    assert train_main(["--exp-dir", str(tmp_path / "resumed"), *args]) == 0
    a = read_checkpoint(tmp_path / "straight" / "final.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "resumed" / "final.pt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
