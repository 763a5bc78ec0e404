"""`asr-kd status`: on an experiment stopped inside stage 6 it names stage 6 next, with wall times and numbers."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from asr_kd.bin.status import main as status_main
from asr_kd.bin.train import main as train_main
from asr_kd.data.frame_bank import FrameBank
from asr_kd.report.status import experiment_status, stage_runs
from asr_kd.utils.io import atomic_write_json
from tests.recipe_run import REPO
from tests.test_frame_bank import NUM_CLASSES, cmvn_of, make_aligned_cuts

CORPUS = "/data/corpus"
# run.log as recipes/run.sh --corpus-dir writes it: a first run killed inside stage 6, then a second one.
RUN_LOG = f"""\
2026-01-05 10:00:00 (run.sh:88:main) Stage 1: lhotse manifests, 40-dim fbank and CMVN stats of {CORPUS}
2026-01-05 10:00:12 (run.sh:127:main) Stage 2: lang dir from CMUdict over the corpus words, a 3-gram LM on the LM text
2026-01-05 10:00:42 (run.sh:148:main) Stage 3: GMM-HMM mono -> tri1 -> tri2 for the frame labels
2026-01-05 10:05:54 (run.sh:164:main) Stage 4: frame banks (speaker-normalised fbank + tri2 pdf-ids) of train, dev and test
2026-01-05 10:06:01 (run.sh:181:main) Stage 5: baseline 'tiny' frame classifier on 100% of train
2026-01-05 10:07:33 (run.sh:188:main) Stage 6: the 2-member ensemble, members differing only in their random seed
""" + "".join(f"2026-01-05 11:00:0{n - 1} (run.sh:16:run_stage) Stage {n}: done before (exp/.stage{n}.done), skipping\n"
              for n in range(1, 6)) + """\
2026-01-05 11:00:05 (run.sh:188:main) Stage 6: the 2-member ensemble, members differing only in their random seed
"""
# results/commands.tsv as `step` writes it; train_gmm with recipes/conf/tiny.conf's GMM settings.
COMMANDS = f"""\
prepare_lang\tpython -m asr_kd.bin.prepare_lang --text exp/lm/transcripts.txt --lang-dir exp/lang --oov-to-unk
train_lm\tpython -m asr_kd.bin.train_lm --corpus-dir {CORPUS} --text {CORPUS}/lm-text.txt --lang-dir exp/lang
train_gmm\tpython -m asr_kd.bin.train_gmm --exp-dir exp --lang-dir exp/lang --mono-iters 8 --mono-gauss 200 \
--mono-utts 1000 --tri1-iters 4 --tri1-leaves 140 --tri1-gauss 400 --tri2-iters 4 --tri2-leaves 180 --tri2-gauss 500 \
--num-workers 2
"""


@pytest.fixture(scope="module")
def half_run(tmp_path_factory) -> Path:
    """Stages 1-5 done (a real baseline), stage 6 cut off with member1 one epoch in."""
    root = tmp_path_factory.mktemp("status")
    exp = root / "exp"
    train_cuts, dev_cuts = make_aligned_cuts(root / "train", 6), make_aligned_cuts(root / "dev", 2, offset=6)
    cmvn = cmvn_of(train_cuts)
    for name, cuts in (("train", train_cuts), ("dev", dev_cuts)):
        FrameBank.build(cuts, exp / "bank" / name, cmvn=cmvn, num_classes=NUM_CLASSES)
    args = ["--frame-bank", str(exp / "bank"), "--model-shape", "tiny", "--batch-size", "64", "--log-interval", "5",
            "--num-epochs", "2", "--device", "cpu", "--amp", "none"]
    assert train_main(["--exp-dir", str(exp / "nnet" / "baseline"), *args]) == 0
    steps = json.loads((exp / "nnet" / "baseline" / "params.json").read_text())["steps_per_epoch"]
    assert train_main(["--exp-dir", str(exp / "nnet" / "member1"), *args, "--seed", "101",
                       "--max-steps", str(steps + 1)]) == 0
    gmm = exp / "gmm" / "tri2"
    atomic_write_json(gmm / "decode" / "results.json",
                      {"lmwt": "10", "dev_wer_by_lmwt": {"10": 25.0, "12": 30.0}, "test_parts": ["test"],
                       "dev": {"wer": 25.0}, "test": {"wer": 28.0, "wer_by_lmwt": {"10": 28.0, "12": 27.0}}})
    (exp / "log").mkdir()
    (exp / "log" / "run.log").write_text(RUN_LOG)
    (exp / "results").mkdir()
    (exp / "results" / "commands.tsv").write_text(COMMANDS)
    for n in range(1, 6):
        (exp / f".stage{n}.done").touch()
    return exp


def _snapshot(exp: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in exp.rglob("*")}


def test_a_run_stopped_in_stage_6_continues_at_stage_6(half_run):
    status = experiment_status(half_run)
    assert status.next_stage == 6
    assert status.stages[0].skipped and status.corpus_dir == CORPUS  # stage 0 is not run with --corpus-dir
    assert [s.done for s in status.stages] == [False] * 1 + [True] * 5 + [False] * 6
    # Wall time: from a stage's last start to the next line of run.log; none for the unfinished stage 6.
    assert [s.seconds for s in status.stages[1:6]] == [12, 30, 312, 7, 92]
    assert status.stages[6].seconds is None and f"{status.stages[6].started:%H:%M:%S}" == "11:00:05"
    assert status.continue_command() == f"recipes/run.sh --preset tiny --exp-dir {half_run} --corpus-dir {CORPUS} --stage 6"


def test_status_prints_numbers_so_far_and_changes_nothing(half_run, capsys):
    before = _snapshot(half_run)
    assert status_main(["--exp-dir", str(half_run)]) == 0
    out = capsys.readouterr().out
    assert _snapshot(half_run) == before
    assert "GMM tri2 WER dev / test: 25.00% / 28.00% (LM weight 10)" in out
    dev_acc = float((half_run / "nnet" / "baseline" / "metrics.csv").read_text().splitlines()[-1].split(",")[5])
    assert f"{100 * dev_acc:6.2f}%  epoch 2, final" in out
    assert "epoch 1, training" in out  # member1
    assert out.rstrip().endswith(f"--corpus-dir {CORPUS} --stage 6")
    assert "    3  done" in out and "0:05:12" in out


def test_a_member_that_links_to_the_baseline_is_listed_once_under_both_names(half_run, tmp_path, capsys):
    # The recipe links nnet/member1 to nnet/baseline (member 1 is the baseline); an experiment built on another's
    # networks links the baseline itself into that one. Either way one model, one line.
    exp = tmp_path / "exp"
    (exp / "nnet").mkdir(parents=True)
    (exp / "nnet" / "baseline").symlink_to(half_run / "nnet" / "baseline")
    (exp / "nnet" / "member1").symlink_to("baseline")
    (exp / "nnet" / "member2").symlink_to(half_run / "nnet" / "member1")
    status = experiment_status(exp)
    assert sorted(status.training) == ["baseline", "member2"]
    assert status.aliases == {"baseline": ["member1"]}
    assert status_main(["--exp-dir", str(exp)]) == 0
    rows = [line.split("%")[0].split() for line in capsys.readouterr().out.splitlines() if "%  epoch" in line]
    assert [row[:-1] for row in rows] == [["baseline", "=", "member1"], ["member2"]]


def test_a_new_experiment_starts_at_stage_0(tmp_path, capsys):
    assert experiment_status(tmp_path).next_stage == 0
    assert status_main(["--exp-dir", str(tmp_path), "--preset", "mini"]) == 0
    out = capsys.readouterr().out
    assert "none yet" in out and out.rstrip().endswith(f"recipes/run.sh --preset mini --exp-dir {tmp_path} --stage 0")


def test_a_missing_experiment_dir_exits_2(tmp_path, capsys):
    assert status_main(["--exp-dir", str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'}: experiment directory not found" in capsys.readouterr().err



def test_stages_trained_side_by_side_end_at_their_finished_lines():
    # run.log of stages 5 and 6 queued together (recipes/stage_helpers.sh run_jobs, two at a time): each ends at
    # its own "Stage N: finished" line, not at the next line of the log.
    lines = [
        ("10:06:01", "run.sh", "Stage 5: baseline '3x512' frame classifier on 100% of train"),
        ("10:06:01", "run.sh", "Stage 6: the 4-member ensemble"),
        ("10:06:02", "stage_helpers.sh", "  train_baseline: started, 1 thread(s), output in exp/log/a.log"),
        ("10:06:02", "stage_helpers.sh", "  train_member2: started, 1 thread(s), output in exp/log/b.log"),
        ("10:11:02", "stage_helpers.sh", "  train_baseline: exit status 0 after 5 min 0 s"),
        ("10:11:02", "stage_helpers.sh", "Stage 5: finished"),
        ("10:16:31", "stage_helpers.sh", "Stage 6: finished"),
        ("10:16:32", "run.sh", "Stage 7: store the ensemble's soft targets"),
    ]
    runs = stage_runs([(datetime.strptime(f"2026-01-05 {t}", "%Y-%m-%d %H:%M:%S"), s, m) for t, s, m in lines])
    assert sorted(runs) == [5, 6, 7]
    assert (runs[5][2] - runs[5][0]).total_seconds() == 301
    assert (runs[6][2] - runs[6][0]).total_seconds() == 630
    assert runs[7][2] is None  # still running: no later line


def test_the_preset_run_sh_logged_wins_over_the_one_its_gmm_settings_suggest(tmp_path):
    # mini_aug trains mini's GMM: the train_gmm settings alone point at mini; run.sh's own line names the preset.
    settings = subprocess.run(["bash", "-c", f'. "{REPO}/recipes/conf/mini_aug.conf"; echo "$mono_iters $mono_gauss '
                               '$mono_utts $tri1_iters $tri1_leaves $tri1_gauss $tri2_iters $tri2_leaves $tri2_gauss"'],
                              check=True, capture_output=True, text=True).stdout.split()
    options = ("mono-iters", "mono-gauss", "mono-utts", "tri1-iters", "tri1-leaves", "tri1-gauss", "tri2-iters",
               "tri2-leaves", "tri2-gauss")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "commands.tsv").write_text(
        "train_gmm\tpython -m asr_kd.bin.train_gmm --exp-dir exp " + " ".join(f"--{o} {v}" for o, v in zip(options, settings)))
    assert experiment_status(tmp_path).preset == "mini"  # a log from before run.sh named its preset
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "run.log").write_text(
        "2026-12-04 10:00:00 (run.sh:160:main) preset: mini_aug (recipes/conf/mini_aug.conf, then the options given)\n")
    status = experiment_status(tmp_path)
    assert status.preset == "mini_aug"
    assert status.continue_command() == f"recipes/run.sh --preset mini_aug --exp-dir {tmp_path} --stage 0"
