"""AUGMENT.md (`asr-kd augment-table`): the updates column counts what each trainer did, not its epoch limit."""

from __future__ import annotations

import json
from pathlib import Path

from asr_kd.bin import augment_table
from tests.markdown_table import table_row

HEADER = "epoch,step,lr,loss,train_acc,dev_acc,dev_ce,frames_per_s\n"


def _write(path: Path, content: str | dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))


def _trained(nnet_dir: Path, epochs: int, steps_per_epoch: int = 10, num_epochs: int = 30) -> None:
    """params.json and metrics.csv as `asr-kd train` writes them: a mid-epoch row and an end-of-epoch row per epoch
    (only the latter has dev accuracy), the run stopped by newbob after `epochs` of at most `num_epochs`."""
    rows = "".join(f"{e},{steps_per_epoch * e - 5},0.1,1.0,0.5,,,100\n{e},{steps_per_epoch * e},0.1,1.0,0.5,"
                   f"{0.3 + e / 100},1.0,100\n" for e in range(1, epochs + 1))
    _write(nnet_dir / "metrics.csv", HEADER + rows)
    _write(nnet_dir / "params.json", {"num_epochs": num_epochs, "steps_per_epoch": steps_per_epoch,
                                      "lr_schedule": "newbob"})


def _decoded(decode_dir: Path, models: list[Path], test_wer: float, other_wer: float) -> None:
    _write(decode_dir / "results.json", {"lmwt": 9, "models": [str(m) for m in models],
                                         "dev": {"wer": 10.0, "frame_accuracy": 0.6},
                                         "test": {"wer": test_wer, "frame_accuracy": 0.62},
                                         "test-other": {"wer": other_wer}})


def test_updates_are_the_epochs_each_trainer_ran_times_its_steps_not_its_epoch_limit(tmp_path):
    src, aug = tmp_path / "src", tmp_path / "src" / "augment"
    _write(src / "bank" / "train" / "manifest.json", {"num_frames": 1000})
    _trained(src / "nnet" / "baseline", epochs=13)
    _decoded(src / "decode" / "baseline", [src / "nnet" / "baseline" / "final.pt"], 12.0, 36.0)
    for member, epochs in (("member1_all", 11), ("member2_all", 11)):
        _trained(aug / "nnet" / member, epochs=epochs)
    _trained(aug / "nnet" / "baseline_all", epochs=14)
    _decoded(aug / "decode" / "baseline_all", [aug / "nnet" / "baseline_all" / "final.pt"], 11.0, 22.0)
    _decoded(aug / "decode" / "ensemble_all", [aug / "nnet" / m / "final.pt" for m in ("member1_all", "member2_all")],
             10.5, 21.0)
    out = aug / "AUGMENT.md"
    assert augment_table.main(["--src-exp", str(src), "--out", str(out),
                               "--row", "source baseline", str(src / "nnet" / "baseline"),
                               str(src / "decode" / "baseline"), "",
                               "--row", "augmented baseline", str(aug / "nnet" / "baseline_all"),
                               str(aug / "decode" / "baseline_all"), "",
                               "--row", "augmented ensemble", "", str(aug / "decode" / "ensemble_all"), ""]) == 0
    md = out.read_text()
    # Columns: system, training frames, copies, updates, dev acc, test acc, dev WER, test WER, test-other WER, ratio.
    assert table_row(md, "source baseline")[3] == "130"  # 13 epochs of 10 steps, not the limit's 30 x 10
    assert table_row(md, "augmented baseline")[3] == "140"
    assert table_row(md, "augmented ensemble")[3] == "2 x 110"
    assert table_row(md, "augmented baseline")[8:10] == ["22.00", "2.00"]


def test_members_newbob_stopped_at_different_epochs_show_the_range_of_their_updates(tmp_path):
    src, aug = tmp_path / "src", tmp_path / "src" / "augment"
    _write(src / "bank" / "train" / "manifest.json", {"num_frames": 1000})
    for member, epochs in (("member1_v", 15), ("member2_v", 13), ("member3_v", 14)):
        _trained(aug / "nnet" / member, epochs=epochs)
    _decoded(aug / "decode" / "ensemble_v", [aug / "nnet" / m / "final.pt" for m in ("member1_v", "member2_v", "member3_v")],
             10.5, 21.0)
    (aug / "nnet" / "member4_v").mkdir()  # a member with no metrics.csv: its updates are unknown
    _decoded(aug / "decode" / "ensemble_w", [aug / "nnet" / m / "final.pt" for m in ("member1_v", "member4_v")],
             10.5, 21.0)
    out = aug / "AUGMENT.md"
    assert augment_table.main(["--src-exp", str(src), "--out", str(out),
                               "--row", "ensemble v", "", str(aug / "decode" / "ensemble_v"), "",
                               "--row", "ensemble w", "", str(aug / "decode" / "ensemble_w"), ""]) == 0
    md = out.read_text()
    assert table_row(md, "ensemble v")[3] == "3 x 130-150"  # 13 and 15 epochs of 10 steps
    assert table_row(md, "ensemble w")[3] == "2 x ?"
