"""Running recipes/run.sh --preset tiny from the tests: once per session, killed once mid-training."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from asr_kd.report.status import experiment_status

REPO = Path(__file__).resolve().parents[1]
RUN_SH = REPO / "recipes" / "run.sh"
KILL_INFO = "kill_test.json"
# Outputs of the stages that were complete when the recipe was killed; a rerun must not touch them.
KEPT_OUTPUTS = [".stage1.done", ".stage2.done", ".stage3.done", ".stage4.done", ".stage5.done",
                "lang_test/G.fst", "gmm/tri2/final.mdl", "gmm/tri2/graph/HCLG.fst", "bank/train/manifest.json",
                "nnet/baseline/final.pt"]


def env_with_this_python() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` is this interpreter
    return env


def run_recipe(exp: Path, corpus: Path, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the tiny recipe to completion (or the given --stop-stage); fail the test on a non-zero exit."""
    proc = subprocess.run(["bash", str(RUN_SH), "--preset", "tiny", "--corpus-dir", str(corpus),
                           "--exp-dir", str(exp), *extra], cwd=REPO, env=env_with_this_python(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"recipe failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


# `python` on the killed run's PATH: member2's trainer SIGKILLs the recipe's whole process group in place of
# writing epoch-2.pt, so the kill always lands after member2's epoch-1 checkpoint and before its final.pt;
# when the baseline trains beside it (--train-jobs), only once stage 5 is marked done (at most 10 minutes).
KILLING_PYTHON = """#!{python}
import os, signal, sys, time
args = sys.argv[1:]
if args[:2] == ["-m", "asr_kd.bin.train"] and any(a.endswith("/nnet/member2") for a in args):
    from pathlib import Path
    import asr_kd.train.train as t
    from asr_kd.bin.train import main
    real = t.save_checkpoint
    def save_or_kill(path, *a, **k):
        if Path(path).name == "epoch-2.pt":
            stage5 = Path(path).parents[2] / ".stage5.done"
            deadline = time.time() + 600
            while not stage5.exists() and time.time() < deadline:
                time.sleep(0.1)
            os.killpg(os.getpgrp(), signal.SIGKILL)
        real(path, *a, **k)
    t.save_checkpoint = save_or_kill
    sys.exit(main(args[2:]))
os.execv({python!r}, [{python!r}, *args])
"""


def _kill_during_member_training(exp: Path, corpus: Path) -> dict:
    """Run the recipe until member2's trainer kills it (its process group) after epoch 1; report what was there."""
    shim = exp.parent / "killing_python"
    shim.mkdir(exist_ok=True)
    (shim / "python").write_text(KILLING_PYTHON.format(python=sys.executable))
    (shim / "python").chmod(0o755)
    env = env_with_this_python()
    env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(["bash", str(RUN_SH), "--preset", "tiny", "--corpus-dir", str(corpus), "--exp-dir",
                           str(exp)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True, timeout=1800)
    member2 = exp / "nnet" / "member2"
    assert proc.returncode == -signal.SIGKILL, (f"the recipe exited with status {proc.returncode} instead of being "
                                                f"killed in member2's epoch 2; its log: {exp / 'log'}")
    assert (member2 / "epoch-1.pt").is_file() and (member2 / "checkpoint.pt").is_file()
    status = experiment_status(exp)  # what `asr-kd status` tells of the killed experiment
    return {"mtimes": {p: (exp / p).stat().st_mtime_ns for p in KEPT_OUTPUTS},
            "member2_final_existed": (member2 / "final.pt").exists(),
            "stage6_done_existed": (exp / ".stage6.done").exists(),
            "status_next_stage": status.next_stage, "status_command": status.continue_command()}


def make_recipe_run(tiny_corpus: Path, tiny_exp: Path, exp: Path) -> Path:
    """The tiny recipe's experiment `exp` on `tiny_exp`'s features: killed in member2's training, then rerun."""
    shutil.copytree(tiny_exp / "data", exp / "data")
    (exp / ".stage1.done").touch()
    info = _kill_during_member_training(exp, tiny_corpus)
    proc = run_recipe(exp, tiny_corpus)
    info["rerun_stdout"] = proc.stdout
    (exp / KILL_INFO).write_text(json.dumps(info))
    return exp
