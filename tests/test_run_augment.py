"""egs/synth/run_augment.sh end to end on the tiny recipe run: copies, banks, baseline, ensemble, student, decodes, table.

One augmented set (a `volume` copy of train) with a 2-member ensemble, trained two at a time on a core each.
Every network must be trained as the source baseline was (its params.json), differing only in data and seed, each
epoch drawing the frames `--frames-per-epoch` asks for (here a few more than the source baseline's), its seed
derived from `--model-seed` (here not the source's) as recipes/run.sh derives seeds from the baseline's, its shape
and window augmentation those `--model-shape` and `--augment` give in place of the source's (here both differ).
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.markdown_table import table_rows
from tests.recipe_run import REPO, env_with_this_python

RUN_AUGMENT = REPO / "egs" / "synth" / "run_augment.sh"
# The source baseline's options that every augmented network must share (params.json keys).
SHARED = ("num_epochs", "batch_size", "lr", "min_lr", "optimizer", "lr_schedule", "momentum", "weight_decay",
          "newbob_start_gain", "newbob_end_gain", "warmup_steps", "grad_clip", "max_norm")


EXTRA_FRAMES = 1024  # --frames-per-epoch: the source baseline's epoch and one batch more
MODEL_SEED_OFFSET = 6  # --model-seed: the source baseline's seed plus this, so that it cannot be the source's
WIDTH_OFFSET = 16  # --model-shape: the source's layers, each this many units wider
AUGMENT = "freq_mask=2"  # --augment: the tiny preset trains without window augmentation


@pytest.fixture(scope="module")
def augmented_run(tiny_recipe_exp, tmp_path_factory):
    exp = tmp_path_factory.mktemp("run_augment") / "augment"
    source = _params(tiny_recipe_exp / "nnet" / "baseline")
    cmd = ["bash", str(RUN_AUGMENT), "--src-exp", str(tiny_recipe_exp), "--exp-dir", str(exp),
           "--augment-sets", "vol:volume", "--distil-sets", "vol", "--num-members", "2", "--train-jobs", "2",
           "--mix-shares", "original=0.5", "--frames-per-epoch", str(source["epoch_frames"] + EXTRA_FRAMES),
           "--model-seed", str(source["seed"] + MODEL_SEED_OFFSET),
           "--model-shape", _wider_shape(source),
           "--augment", AUGMENT]
    assert source["augment"] != AUGMENT
    proc = subprocess.run(cmd, cwd=REPO, env=env_with_this_python(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"run_augment.sh failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return exp, cmd


def _params(path):
    return json.loads((path / "params.json").read_text())


def _wider_shape(source: dict) -> str:
    """--model-shape: the source baseline's layers, WIDTH_OFFSET units wider."""
    return f'{source["model"]["num_layers"]}x{source["model"]["hidden_dim"] + WIDTH_OFFSET}'


def test_every_network_trains_as_the_source_baseline_on_its_frames_per_epoch(augmented_run, tiny_recipe_exp):
    exp, _ = augmented_run
    source = _params(tiny_recipe_exp / "nnet" / "baseline")
    nets = {name: _params(exp / "nnet" / name) for name in ("baseline_vol", "member1_vol", "member2_vol", "student_vol")}
    for name, params in nets.items():
        assert (exp / "nnet" / name / "final.pt").is_file(), name
        assert {k: params[k] for k in SHARED} == {k: source[k] for k in SHARED}, name
        assert params["epoch_frames"] == source["epoch_frames"] + EXTRA_FRAMES, name
        assert params["mix_shares"] == "original=0.5", name
        assert params["model"] == {**source["model"], "hidden_dim": source["model"]["hidden_dim"] + WIDTH_OFFSET}, name
        assert params["augment"] == AUGMENT, name
    seed = source["seed"] + MODEL_SEED_OFFSET
    assert [nets[f"member{m}_vol"]["seed"] for m in (1, 2)] == [100 * seed + 1, 100 * seed + 2]
    assert nets["baseline_vol"]["seed"] == nets["student_vol"]["seed"] == seed
    members = [str(exp / "nnet" / f"member{m}_vol" / "final.pt") for m in (1, 2)]
    assert nets["student_vol"]["teacher_checkpoints"] == members


@pytest.mark.parametrize("option, value, message", [
    ("--frames-per-epoch", "4x", "--frames-per-epoch is a whole number of frames"),
    ("--model-seed", "two", "--model-seed is a whole number"),
    ("--model-shape", "3x", "--model-shape: unknown model shape"),
    ("--augment", "freq_mask=wide", "freq_mask needs a number"),
])
def test_an_option_given_something_malformed_is_refused(tiny_recipe_exp, tmp_path, option, value, message):
    cmd = ["bash", str(RUN_AUGMENT), "--src-exp", str(tiny_recipe_exp), "--exp-dir", str(tmp_path / "augment"),
           option, value]
    proc = subprocess.run(cmd, cwd=REPO, env=env_with_this_python(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and f"'{value}'" in proc.stderr
    assert not (tmp_path / "augment" / "nnet").exists()


def _source_without_members(tiny_recipe_exp, root):
    """The tiny recipe run as a source whose nnet/ holds the baseline only (as a run stopped after stage 5)."""
    src = root / "src"
    src.mkdir()
    for child in tiny_recipe_exp.iterdir():
        if child.name != "nnet":
            (src / child.name).symlink_to(child)
    (src / "nnet").mkdir()
    (src / "nnet" / "baseline").symlink_to(tiny_recipe_exp / "nnet" / "baseline")
    return src


def test_a_source_without_members_is_refused_only_where_a_distil_set_needs_them(tiny_recipe_exp, tmp_path):
    src = _source_without_members(tiny_recipe_exp, tmp_path)
    cmd = ["bash", str(RUN_AUGMENT), "--src-exp", str(src), "--augment-sets", "vol:volume"]
    refused = subprocess.run(cmd + ["--exp-dir", str(tmp_path / "distil"), "--distil-sets", "vol"], cwd=REPO,
                             env=env_with_this_python(), capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "member*/final.pt" in refused.stderr and "give --num-members N" in refused.stderr
    # Without distil sets no member is needed: past the checks, to a run with no stage left to do.
    baselines_only = subprocess.run(cmd + ["--exp-dir", str(tmp_path / "baselines"), "--distil-sets", "", "--stage", "9"],
                                    cwd=REPO, env=env_with_this_python(), capture_output=True, text=True, timeout=60)
    assert baselines_only.returncode == 0, baselines_only.stderr[-2000:]
    assert "Finished stages 9..100" in baselines_only.stdout + baselines_only.stderr


def test_members_train_side_by_side_on_one_thread_each(augmented_run):
    exp, _ = augmented_run
    run_log = (exp / "log" / "run.log").read_text()
    for m in (1, 2):
        assert re.search(rf"train_member{m}_vol: started, 1 thread\(s\)", run_log), run_log[-2000:]
        assert "1 CPU thread(s)" in (exp / "log" / f"train_member{m}_vol.log").read_text()


def test_table_has_every_system_with_its_never_heard_wer(augmented_run, tiny_recipe_exp):
    exp, _ = augmented_run
    md = (exp / "AUGMENT.md").read_text()
    rows = {row[0]: row for row in table_rows(md)}
    # Each row names its copies, its mix and the shape and augmentation that replaced the source's.
    what = f"volume (each epoch original=0.5), {_wider_shape(_params(tiny_recipe_exp / 'nnet' / 'baseline'))}, " \
           f"--augment {AUGMENT}"
    for system in ("baseline", "ensemble (2)", "distilled"):
        label = f"{system}, augmented: {what}"
        assert label in rows, f"no row {label!r} in {md}"
        test_wer, never_heard_wer = rows[label][7], rows[label][8]
        assert re.fullmatch(r"\d+\.\d+", test_wer) and re.fullmatch(r"\d+\.\d+", never_heard_wer), rows[label]
    assert "recovers" in md


def test_rerun_skips_every_stage(augmented_run):
    exp, cmd = augmented_run
    before = {p: p.stat().st_mtime_ns for p in (exp / "nnet").rglob("final.pt")}
    proc = subprocess.run(cmd, cwd=REPO, env=env_with_this_python(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for n in range(1, 9):
        assert f"Stage {n}: done before" in proc.stdout, proc.stdout[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (exp / "nnet").rglob("final.pt")} == before
