"""recipes/stage_helpers.sh `queue_stage` / `queue_job` / `run_jobs`: the recipe's queue of training runs.

Each test writes a small bash recipe that sources the helpers and queues real processes (python one-liners
that write files), then checks what they did: side by side or one after the other, the threads each got,
the stages marked done, and how a failing step fails the recipe.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.recipe_run import REPO

HELPERS = REPO / "recipes" / "stage_helpers.sh"
# A step: writes OMP_NUM_THREADS to <dir>/<name>.threads; with a partner, waits up to 30 s for the partner's
# file first (so it can only finish while the partner runs alongside it).
STEP = """
import os, sys, time
out, name, partner, status = sys.argv[1:5]
with open(os.path.join(out, name + ".started"), "w"):
    pass
deadline = time.time() + 30
while partner != "-" and not os.path.exists(os.path.join(out, partner + ".started")):
    if time.time() > deadline:
        sys.exit("no partner")
    time.sleep(0.05)
with open(os.path.join(out, name + ".threads"), "w") as f:
    f.write(os.environ.get("OMP_NUM_THREADS", "unset"))
sys.exit(int(status))
"""


def run_queue(tmp_path: Path, jobs: str, steps: list[tuple[int, str, str, int]]) -> subprocess.CompletedProcess:
    """Queue `steps` (stage, name, partner or '-', exit status) in a recipe and run them `jobs` at a time."""
    (tmp_path / "step.py").write_text(STEP)
    lines = ["set -euo pipefail", f"exp_dir={tmp_path}/exp; results_dir=$exp_dir/results; device=cpu",
             f". {HELPERS}"]
    queued: set[int] = set()
    for stage, name, partner, status in steps:
        if stage not in queued:
            lines.append(f"queue_stage {stage}")
            queued.add(stage)
        lines.append(f"queue_job {name} {sys.executable} {tmp_path}/step.py {tmp_path} {name} {partner} {status}")
    lines += [f"run_jobs {jobs}", "echo all-done"]
    (tmp_path / "recipe.sh").write_text("\n".join(lines) + "\n")
    return subprocess.run(["bash", str(tmp_path / "recipe.sh")], capture_output=True, text=True, timeout=120)


def test_two_jobs_run_side_by_side_on_half_the_cores_each(tmp_path):
    # Each step waits for the other to start: run one after the other, the first would give up.
    proc = run_queue(tmp_path, "2", [(5, "a", "b", 0), (6, "b", "a", 0), (6, "c", "-", 0)])
    assert proc.returncode == 0, proc.stderr
    threads = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert [(tmp_path / f"{n}.threads").read_text() for n in "abc"] == [threads] * 3
    exp = tmp_path / "exp"
    assert (exp / ".stage5.done").is_file() and (exp / ".stage6.done").is_file()
    assert (exp / "log" / "a.log").is_file()  # each step's output has its own log
    commands = (exp / "results" / "commands.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in commands] == ["a", "b", "c"]
    assert "all-done" in proc.stdout


def test_one_job_at_a_time_runs_in_order_with_the_threads_it_had(tmp_path):
    proc = run_queue(tmp_path, "1", [(5, "a", "-", 0), (6, "b", "a", 0)])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.threads").read_text() == os.environ.get("OMP_NUM_THREADS", "unset")
    assert not (tmp_path / "exp" / "log" / "a.log").exists()  # in the foreground, as `step` runs it


def test_a_failed_step_fails_the_recipe_after_the_others_finish_and_names_its_log(tmp_path):
    proc = run_queue(tmp_path, "2", [(5, "a", "-", 0), (6, "b", "-", 3), (6, "c", "-", 0)])
    exp = tmp_path / "exp"
    assert proc.returncode != 0 and "all-done" not in proc.stdout
    assert f"step b failed (exit status 3); its output: {exp}/log/b.log" in proc.stderr
    assert (tmp_path / "c.threads").is_file()  # the step queued after the failed one still ran
    assert (exp / ".stage5.done").is_file()  # stage 5's only step succeeded
    assert not (exp / ".stage6.done").exists()


def test_a_later_stage_is_not_marked_before_an_earlier_one(tmp_path):
    proc = run_queue(tmp_path, "2", [(8, "student", "-", 1), (9, "subset", "-", 0)])
    exp = tmp_path / "exp"
    assert proc.returncode != 0
    assert (tmp_path / "subset.threads").is_file()  # stage 9's step succeeded ...
    assert not (exp / ".stage9.done").exists()  # ... but stage 8 before it did not


def test_a_job_count_that_is_not_a_number_is_refused(tmp_path):
    proc = run_queue(tmp_path, "two", [(5, "a", "-", 0)])
    assert proc.returncode == 2 and "--train-jobs must be a positive number or auto, not 'two'" in proc.stderr


def test_a_lone_step_gets_the_threads_of_its_share_not_all_cores(tmp_path):
    # A network resumed alone must train on the threads it had beside the others, to come out the same.
    proc = run_queue(tmp_path, "2", [(6, "member2", "-", 0)])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "member2.threads").read_text() == str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert (tmp_path / "exp" / "log" / "member2.log").is_file()


def test_auto_takes_one_job_per_core_up_to_the_given_most(tmp_path):
    proc = run_queue(tmp_path, "auto 1", [(5, "a", "-", 0), (6, "b", "a", 0)])
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "exp" / "log" / "a.log").exists()  # at most 1: one after the other, in the foreground
