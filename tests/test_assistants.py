"""Teacher-assistant chains: shape parsing, the chain plan, and a real 2-link chain whose second
link learns from the first link's model, not from the original teacher."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asr_kd.bin.train import main as train_main
from asr_kd.bin.train import parse_train_options
from asr_kd.data.frame_bank import FrameBank
from asr_kd.distill.ensemble import file_sha256
from asr_kd.models import FrameClassifier
from asr_kd.models.shapes import NetShape, parse_shape, shape_config
from asr_kd.train.assistants import link_train_config, parse_shape_path, plan_chain, run_chain
from asr_kd.train.sampler import epoch_permutation
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import read_json

NUM_CLASSES, FEAT_DIM = 6, 5
# Tiny nets, 1 epoch of ~16 steps; every step logged so that metrics.csv's first row is the first batch.
# The model shape is the trainer's default, tiny (a chain link sets its own).
TRAIN_OPTIONS = ["--left-context", "2", "--right-context", "1", "--batch-size", "128", "--lr", "0.05",
                 "--num-epochs", "1", "--log-interval", "1", "--amp", "none", "--device", "cpu",
                 "--lr-schedule", "constant", "--seed", "3"]


def make_banks(root: Path, seed: int = 0) -> Path:
    """train/ and dev/ banks of utterances whose frames sit near their class's mean: learnable labels."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1.5, size=(NUM_CLASSES, FEAT_DIM)).astype(np.float32)
    for name, num_utts in (("train", 10), ("dev", 3)):
        feats, labels = [], []
        for _ in range(num_utts):
            lab = np.repeat(rng.integers(0, NUM_CLASSES, size=20), 10)  # 20 segments of 10 frames
            labels.append(lab.astype(np.int32))
            feats.append(means[lab] + rng.normal(0, 1.0, size=(len(lab), FEAT_DIM)).astype(np.float32))
        FrameBank.from_arrays(feats, labels, [f"{name}-{i}" for i in range(num_utts)], root / name,
                              num_classes=NUM_CLASSES)
    return root


@pytest.fixture(scope="module")
def banks(tmp_path_factory) -> Path:
    return make_banks(tmp_path_factory.mktemp("chain_banks"))


@pytest.mark.parametrize("text, shape", [("2x96", NetShape(2, 96)), (" 8x2560 ", NetShape(8, 2560)),
                                         ("1x1", NetShape(1, 1))])
def test_shape_strings_parse_to_layers_and_width(text, shape):
    assert parse_shape(text) == shape
    assert str(parse_shape(text)) == text.strip()


@pytest.mark.parametrize("text", ["2x", "x96", "0x96", "2x0", "2*96", "2x96x3", "", "-1x5", "2 x 96", "2X96", "ax96"])
def test_bad_shape_strings_are_input_errors(text):
    with pytest.raises(InputError, match="LAYERSxWIDTH"):
        parse_shape(text)


def test_assistant_path_takes_spaces_or_commas_and_must_not_be_empty():
    assert parse_shape_path("2x96 2x64") == (NetShape(2, 96), NetShape(2, 64))
    assert parse_shape_path("2x96,2x64") == parse_shape_path(" 2x96 ,  2x64 ")
    for empty in ("", "   ", ","):
        with pytest.raises(InputError, match="empty assistant path"):
            parse_shape_path(empty)
    with pytest.raises(InputError, match="'3y4'"):
        parse_shape_path("2x96 3y4")


def test_each_link_is_taught_by_the_link_before_it(tmp_path):
    teacher = [tmp_path / "m1.pt", tmp_path / "m2.pt"]
    links = plan_chain(teacher, parse_shape_path("2x96 2x64"), parse_shape("2x32"), tmp_path / "links")
    assert [str(link.shape) for link in links] == ["2x96", "2x64", "2x32"]
    assert [link.role for link in links] == ["assistant", "assistant", "student"]
    assert links[0].teacher == tuple(teacher)
    assert links[1].teacher == (tmp_path / "links" / "2x96" / "final.pt",)
    assert links[2].teacher == (links[1].final,)
    assert links[2].exp_dir == tmp_path / "links" / "2x96" / "2x64" / "2x32"
    assert [link.lineage for link in links] == ["2x96", "2x96-2x64", "2x96-2x64-2x32"]
    # Direct distillation is the chain without assistants; its student has its own directory.
    (direct,) = plan_chain(teacher, (), parse_shape("2x32"), tmp_path / "links")
    assert direct.teacher == tuple(teacher) and direct.exp_dir == tmp_path / "links" / "2x32"
    assert direct.is_student and direct.lineage == "2x32"
    with pytest.raises(InputError, match="teacher"):
        plan_chain([], (), parse_shape("2x32"), tmp_path)


def test_link_train_configs_point_at_the_previous_links_soft_targets(tmp_path):
    links = plan_chain([tmp_path / "m1.pt"], (NetShape(2, 64),), NetShape(1, 16), tmp_path / "links")
    first = link_train_config(links[0], "bank", temperature=2, hard_weight=0.5, first_store="exp/soft_T2")
    second = link_train_config(links[1], "bank", temperature=2, hard_weight=0.5, first_store="exp/soft_T2")
    assert first.soft_targets_dir == Path("exp/soft_T2")
    assert second.soft_targets_dir == tmp_path / "links" / "2x64" / "soft_T2"
    assert second.model_shape == "1x16"
    online = link_train_config(links[1], "bank", temperature=2, hard_weight=0.5, soft_targets="online")
    assert online.teacher_checkpoints[0] == links[0].final
    with pytest.raises(InputError, match="--model-shape"):
        link_train_config(links[1], "bank", temperature=2, hard_weight=0.5,
                          train_options=parse_train_options(["--model-shape", "1x8"]))


def _first_logged_loss(exp_dir: Path) -> float:
    with open(exp_dir / "metrics.csv") as f:
        return float(next(csv.DictReader(f))["loss"])


def _soft_loss_of_first_batch(bank: FrameBank, shape: NetShape, teacher: FrameClassifier, temperature: float) -> float:
    """T^2 * CE(teacher at T, student at T) of the trainer's first batch, from the student's initial weights."""
    config = shape_config(str(shape), left_context=2, right_context=1, feat_dim=FEAT_DIM, num_outputs=NUM_CLASSES)
    torch.manual_seed(3)  # the trainer seeds the initial weights with --seed
    student = FrameClassifier(config).eval()
    idx = epoch_permutation(bank.num_frames, 3, 1)[:128]
    x = bank.splice(idx, 2, 1)
    with torch.no_grad():
        target = F.softmax(teacher.eval()(x).float() / temperature, dim=-1)
        log_q = F.log_softmax(student(x).float() / temperature, dim=-1)
    return float(temperature ** 2 * -(target * log_q).sum(-1).mean())


def test_two_link_chain_trains_the_student_on_the_assistants_soft_targets(banks, tmp_path):
    teacher_dir = tmp_path / "teacher"
    assert train_main(["--exp-dir", str(teacher_dir), "--frame-bank", str(banks), *TRAIN_OPTIONS,
                       "--model-shape", "2x64", "--num-epochs", "4", "--lr", "0.2"]) == 0
    links = plan_chain([teacher_dir / "final.pt"], (NetShape(1, 32),), NetShape(1, 8), tmp_path / "links")
    # hard weight 0: the loss is the soft term alone; top-k = all classes: the stored targets are exact.
    run_chain(links, banks, temperature=2.0, hard_weight=0.0, top_k=NUM_CLASSES,
              train_options=parse_train_options(TRAIN_OPTIONS), device="cpu")
    assert all(link.final.is_file() for link in links)

    # The student's store was made from the assistant's checkpoint, the assistant's from the teacher's.
    for link, teacher_ckpt in ((links[0], teacher_dir / "final.pt"), (links[1], links[0].final)):
        manifest = read_json(link.teacher_dir / "soft_T2" / "manifest.json")
        assert [t["sha256"] for t in manifest["teacher"]["checkpoints"]] == [file_sha256(teacher_ckpt)], link.exp_dir

    # Its first loss is the soft CE against the assistant (computed here from the checkpoints), and
    # clearly not the one against the original teacher.
    bank = FrameBank.load(banks / "train")
    logged = _first_logged_loss(links[1].exp_dir)
    assistant = FrameClassifier.load(links[0].final)
    original = FrameClassifier.load(teacher_dir / "final.pt")
    # metrics.csv keeps 6 significant digits; fp16 targets barely move a loss against a near-uniform
    # initial student (their rounding errors sum to ~0 after renormalising).
    tolerance = 1e-4 * logged
    assert abs(logged - _soft_loss_of_first_batch(bank, links[1].shape, assistant, 2.0)) < tolerance
    assert abs(logged - _soft_loss_of_first_batch(bank, links[1].shape, original, 2.0)) > 10 * tolerance
    # A rerun finds every link finished and leaves the student untouched.
    before = file_sha256(links[1].final)
    run_chain(links, banks, temperature=2.0, hard_weight=0.0, top_k=NUM_CLASSES,
              train_options=parse_train_options(TRAIN_OPTIONS), device="cpu")
    assert file_sha256(links[1].final) == before


def test_results_table_reads_accuracy_and_decoding_files_and_marks_missing_ones(tmp_path):
    from asr_kd.report.systems_table import read_row, systems_table
    from asr_kd.utils.io import atomic_write_json

    atomic_write_json(tmp_path / "acc_a_dev.json", {"accuracy": 0.5, "num_frames": 10, "models": []})
    atomic_write_json(tmp_path / "acc_a_test.json", {"accuracy": 0.25, "num_frames": 12, "models": []})
    atomic_write_json(tmp_path / "dec" / "results.json", {"dev": {"wer": 16.4}, "test": {"wer": 18.25},
                                                          "lmwt": "11", "num_params": 1234, "models": []})
    table = systems_table([read_row("kd", tmp_path / "acc_a", tmp_path / "dec"),
                           read_row("not run", tmp_path / "acc_b", None)])
    lines = table.splitlines()
    assert lines[2] == "| kd | 1234 | 50.00 | 25.00 | 16.40 | 18.25 | 11 |"
    assert lines[3] == "| not run | – | – | – | – | – | – |"
