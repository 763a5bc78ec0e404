"""results.md of egs/mnist: the paper's MNIST numbers (Hinton et al. 2015, sec. 3) beside ours.

Reads the JSON files `asr-kd mnist-eval` wrote into the results dir (teacher, baseline_sN,
distilled_sN, small_hard, small_T<T>, transfer_no3, transfer_78), the commands.tsv and
stage_times.tsv the recipe kept, and, with an experiment dir, each net's train.log (the device and
precision it trained in): the tables, the seeds and epochs, the wall time per stage and the hardware.

The command line is `asr-kd mnist-report` (asr_kd/bin/mnist_report.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from asr_kd.utils.hardware import describe_hardware, hardware_line
from asr_kd.report.markdown import markdown_table
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import read_json

__all__ = ["MnistSettings", "STAGE_NAMES", "mnist_results", "stage_times", "trained_on"]


@dataclass(frozen=True)
class MnistSettings:
    """Where egs/mnist/run.sh's results are, and the settings it ran with (recorded in the file)."""

    results_dir: Path           # mnist-eval JSON files, commands.tsv, stage_times.tsv
    data_dir: Path              # the banks' directory (its summary.json)
    seeds: Sequence[str]        # seeds of the 2x800 students
    temperatures: Sequence[str]  # temperatures of the 2x30 sweep
    temperature: str            # temperature of the 2x800 students
    teacher_dropout: str
    teacher_epochs: int
    student_epochs: int
    small_epochs: int
    transfer78_epochs: int
    exp_dir: Path | None = None  # the recipe's directory: each net's train.log says its precision
    amp: str | None = None
    num_threads: str | None = None
    batch_size: str | None = None
    lr: str | None = None


# The trainer's first log line ends "... N steps/epoch on DEVICE[ bf16], K CPU thread(s)" (without the
# threads before commit fcaa15b).
_RUN_ON = re.compile(r"steps/epoch on ([^\s,]+)( bf16)?(, \d+ CPU thread\(s\))?\s*$")


def trained_on(train_log: Path) -> str | None:
    """"cpu bf16", "cpu fp32", ... from a trainer's train.log (its last start), None when it says nothing."""
    if not train_log.is_file():
        return None
    found = None
    for line in train_log.read_text(errors="replace").splitlines():
        m = _RUN_ON.search(line)
        if m:
            found = f"{m.group(1)} {'bf16' if m.group(2) else 'fp32'}"
    return found


def stage_times(results_dir: Path) -> dict[str, int]:
    """Stage -> wall seconds from stage_times.tsv (a rerun stage: its latest time)."""
    path = results_dir / "stage_times.tsv"
    if not path.is_file():
        return {}
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        if "\t" in line:
            stage, secs = line.split("\t", 1)
            out[stage] = int(secs)
    return out


STAGE_NAMES = {"0": "data: wheel and frame banks", "1": "teacher 2x1200", "2": "baseline 2x800 students",
               "3": "soft targets, distilled 2x800 students", "4": "2x30 students: hard, and soft targets + student per T",
               "5": "no-3 transfer: soft targets + student", "6": "7/8 transfer: soft targets + student",
               "7": "scoring and bias sweeps"}


def _load(results_dir: Path, name: str) -> dict[str, Any]:
    path = results_dir / f"{name}.json"
    if not path.is_file():
        raise InputError(f"{path}: missing; run stage 7 of egs/mnist/run.sh (mnist-eval) first")
    return read_json(path)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def mnist_results(opts: MnistSettings) -> str:
    """The whole results.md."""
    def r(name: str) -> dict[str, Any]:
        return _load(opts.results_dir, name)

    summary = read_json(opts.data_dir / "summary.json")
    teacher = r("teacher")
    base = {s: r(f"baseline_s{s}") for s in opts.seeds}
    dist = {s: r(f"distilled_s{s}") for s in opts.seeds}
    out = ["# MNIST (Hinton, Vinyals & Dean 2015, section 3) with asr-kd's trainer and losses\n",
           f"Training: all {summary['train']['images']} images (classic train + validation); test: "
           f"{summary['test']['images']} images ({summary['test']['per_class'][3]} threes). Hardware: "
           f"{hardware_line(describe_hardware())}. The test set is the trainer's dev set for logging only "
           "(cosine LR, no early stopping, final.pt scored in fp32).\n"]
    settings = [f"{k} {v}" for k, v in (("batch", opts.batch_size), ("base LR", opts.lr), ("--amp", opts.amp),
                                         ("threads", opts.num_threads)) if v is not None]
    if settings:
        out.append("Settings: " + ", ".join(settings) + " (SGD momentum 0.9, cosine LR to 0).\n")
    if opts.exp_dir is not None:
        nets = (["teacher"] + [f"{k}_s{s}" for k in ("baseline", "distilled") for s in opts.seeds] + ["small_hard"]
                + [f"small_T{t}" for t in opts.temperatures] + ["transfer_no3", "transfer_78"])
        where: dict[str, list[str]] = {}
        for net in nets:
            where.setdefault(trained_on(opts.exp_dir / net / "train.log") or "unknown (no train.log)", []).append(net)
        out.append("Trained in (each net's train.log): " + "; ".join(
            f"{w}: {len(n)} of {len(nets)} nets" + (f" ({', '.join(n)})" if len(n) < len(nets) else "")
            for w, n in where.items()) + ".\n")
    out.append("## Teacher, baseline and distilled students (test errors of 10,000)\n")
    rows: list[list[Any]] = [[f"teacher 2x1200, dropout {opts.teacher_dropout} + max-norm + 2-px jitter", opts.teacher_epochs, "1",
                              67, teacher["errors"], None]]
    for s in opts.seeds:
        rows.append(["baseline 2x800, hard labels, no regularisation", opts.student_epochs, s, 146,
                     base[s]["errors"], base[s]["disagreements_with_teacher"]])
    for s in opts.seeds:
        rows.append([f"distilled 2x800, soft targets T={opts.temperature}", opts.student_epochs, s, 74,
                     dist[s]["errors"], dist[s]["disagreements_with_teacher"]])
    rows.append(["baseline 2x800, mean over seeds", opts.student_epochs, " ".join(opts.seeds), 146,
                 _mean([b["errors"] for b in base.values()]), _mean([b["disagreements_with_teacher"] for b in base.values()])])
    rows.append(["distilled 2x800, mean over seeds", opts.student_epochs, " ".join(opts.seeds), 74,
                 _mean([d["errors"] for d in dist.values()]), _mean([d["disagreements_with_teacher"] for d in dist.values()])])
    out.append(markdown_table(["model", "epochs", "seed", "paper", "ours", "ours: differs from teacher"], rows, 1))
    closer = [s for s in opts.seeds if dist[s]["errors"] < base[s]["errors"]
              and dist[s]["disagreements_with_teacher"] < base[s]["disagreements_with_teacher"]]
    out.append(f"\nDistilled student closer to the teacher than the baseline (fewer test errors and fewer "
               f"disagreements with the teacher, same seed): {len(closer)} of {len(opts.seeds)} seeds.\n")

    out.append("\n## Temperature sweep, 2x30 students (paper: T between 2.5 and 4 works best)\n")
    small = [["hard labels only", "–", r("small_hard")["errors"]]]
    small += [["distilled", t, r(f"small_T{t}")["errors"]] for t in opts.temperatures]
    out.append(markdown_table(["2x30 student", "T", "test errors"], small, 1))
    best = min(opts.temperatures, key=lambda t: r(f"small_T{t}")["errors"])
    out.append(f"\n{opts.small_epochs} epochs each, seed 1. Best T here: {best}.\n")

    no3, t78 = r("transfer_no3"), r("transfer_78")
    threes = no3["test_per_class"][3]
    b3, b78 = no3["bias"], t78["bias"]
    out.append(f"\n## Transfer sets that leave out digits (2x800 students, T={opts.temperature}, seed 1)\n")
    trans = [
        ["no 3 (%d images), %d epochs" % (summary["train_no3"]["images"], opts.student_epochs), "none",
         "206 errors, 133 on threes", f"{no3['errors']} errors, {no3['errors_per_class'][3]} on threes"],
        ["no 3", "3-bias raised (best on test)", "+3.5: 109 errors, 14 on threes",
         f"{b3['best_shift']:+.1f}: {b3['errors']} errors, {b3['errors_per_class'][3]} on threes"],
        ["only 7 and 8 (%d images), %d epochs" % (summary["train_78"]["images"], opts.transfer78_epochs), "none",
         "47.3% error", f"{100 * t78['error_rate']:.1f}% error"],
        ["only 7 and 8", "7/8 biases lowered (best on test)", "-7.6: 13.2% error",
         f"{b78['best_shift']:+.1f}: {100 * b78['error_rate']:.1f}% error"],
    ]
    out.append(markdown_table(["transfer set", "bias adjustment", "paper", "ours"], trans))
    out.append(f"\nThe test set has {threes} threes. Bias shifts swept from 0 to 15 in steps of 0.1 "
               "(`asr-kd mnist-eval --bias-classes`).\n")
    times = stage_times(opts.results_dir)
    if times:
        rows = [[k, STAGE_NAMES.get(k, ""), round(v / 60, 1)] for k, v in sorted(times.items())]
        rows.append(["all", "stages timed above", round(sum(times.values()) / 60, 1)])
        out.append("\n## Wall time per stage\n")
        out.append(markdown_table(["stage", "what", "minutes"], rows, 1))
    commands = opts.results_dir / "commands.tsv"
    if commands.is_file():
        # A step rerun (e.g. after its outputs were removed) is listed once, with its latest command.
        latest = dict(line.split("\t", 1) for line in commands.read_text().splitlines() if "\t" in line)
        lines = [f"# {name}\n{cmd}" for name, cmd in latest.items()]
        out.append("\n## Commands\n\n```\n" + "\n".join(lines) + "\n```\n")
    return "\n".join(out)
