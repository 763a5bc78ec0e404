"""Where an experiment of recipes/run.sh stands: stages done, their wall times, the numbers so far, what to run next.

Everything comes from what the recipe already writes: the `.stageN.done` markers, the timestamped
`Stage N: ...` lines of log/run.log, results/commands.tsv, each model's metrics.csv and the stages'
JSON results (read with asr_kd.report.collect). Nothing is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from asr_kd.report.collect import Results, collect_scores, read_commands, read_metrics
from asr_kd.report.tables import PAPER_GAIN_RECOVERED, gain_recovered

RECIPE_DIR = Path(__file__).resolve().parents[2] / "recipes"


@dataclass(frozen=True)
class RecipeStage:
    """One stage of recipes/run.sh: its number, what it makes, and the `asr-kd` verbs it runs."""

    number: int
    summary: str
    verbs: tuple[str, ...]


# recipes/run.sh's stages; tests/test_cli.py checks the verbs against the script.
RECIPE_STAGES = (
    RecipeStage(0, "synthesize the embedded corpus (skipped with --corpus-dir)", ("synth-corpus",)),
    RecipeStage(1, "lhotse manifests, 40-dim fbank, CMVN stats", ("prepare-data",)),
    RecipeStage(2, "LM text, lang dir (a lexicon file and/or CMUdict), n-gram LM (trained or given) and G.fst",
                ("prepare-lm-text", "prepare-lang", "train-lm")),
    RecipeStage(3, "GMM-HMM mono -> tri1 -> tri2: alignments (the frame labels), HCLG, GMM WER",
                ("train-gmm", "align", "make-graph", "decode-gmm")),
    RecipeStage(4, "frame banks of train, dev, test and the other aligned parts (optionally perturbed copies of "
                "train, and the transfer set)", ("augment-data", "build-frame-bank")),
    RecipeStage(5, "the baseline frame classifier on 100% of train (and its copies)", ("train",)),
    RecipeStage(6, "the ensemble: members differing only in their seed", ("train",)),
    RecipeStage(7, "the ensemble's soft targets at temperature T", ("make-soft-targets",)),
    RecipeStage(8, "the distilled student", ("train",)),
    RecipeStage(9, "3% of train: hard labels with early stopping, soft targets without, optionally also on "
                "perturbed copies of the 3%", ("augment-data", "build-frame-bank", "train")),
    RecipeStage(10, "hybrid decoding of baseline, ensemble and student on every dev and test part; frame accuracies",
                ("decode-nnet", "frame-accuracy")),
    RecipeStage(11, "RESULTS.md: paper Table 1 / Table 5 forms, plots", ("report",)),
)

# `log` in recipes/stage_helpers.sh: "2026-12-01 17:59:42 (run.sh:80:main) Stage 0: ..."
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \(([^:()]+):\d+:[^)]*\) (.*)$")
STAGE_START = re.compile(r"^Stage (\d+): (.*)$")
STAGE_END = re.compile(r"^Stage (\d+): finished\b")
SYSTEMS = ("baseline", "ensemble", "student", "baseline_subset", "student_subset", "student_subset_ensemble")
GMM_OPTIONS = ("mono_iters", "mono_gauss", "mono_utts", "tri1_iters", "tri1_leaves", "tri1_gauss",
               "tri2_iters", "tri2_leaves", "tri2_gauss")


@dataclass
class StageState:
    """A stage of one experiment: done or not, and its last start in run.log."""

    stage: RecipeStage
    done: bool
    description: str  # run.log's line for its last start (options filled in), else the stage's summary
    started: datetime | None = None
    seconds: float | None = None  # wall time of that run, when it finished
    skipped: bool = False  # stage 0 of an experiment on a --corpus-dir corpus


@dataclass
class ExperimentStatus:
    """What `asr-kd status` shows of an experiment directory."""

    exp_dir: Path
    stages: list[StageState]
    corpus_dir: str | None  # the --corpus-dir it ran with; None: the embedded corpus (stage 0)
    preset: str | None
    scores: Results
    training: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # model -> (epoch, dev accuracy)
    finished_models: set[str] = field(default_factory=set)
    aliases: dict[str, list[str]] = field(default_factory=dict)  # model -> its other names in nnet/ (member1)

    @property
    def next_stage(self) -> int | None:
        """The first stage neither done nor skipped; None when the recipe has finished."""
        return next((s.stage.number for s in self.stages if not s.done and not s.skipped), None)

    def continue_command(self, preset: str | None = None) -> str | None:
        """recipes/run.sh's command line that carries on from the next stage; None when all are done."""
        if self.next_stage is None:
            return None
        corpus = f" --corpus-dir {self.corpus_dir}" if self.corpus_dir else ""
        return (f"recipes/run.sh --preset {preset or self.preset or 'PRESET'} --exp-dir {self.exp_dir}{corpus} "
                f"--stage {self.next_stage}")


def read_run_log(path: Path) -> list[tuple[datetime, str, str]]:
    """(time, script, message) of each `log` line of run.log; other lines (tool output) are left out."""
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = LOG_LINE.match(line)
        if m:
            lines.append((datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"), m.group(2), m.group(3)))
    return lines


def stage_runs(log_lines: list[tuple[datetime, str, str]]) -> dict[int, tuple[datetime, str, datetime | None]]:
    """Per stage, its last start in run.sh's log lines: (time, message, end), the end being the stage's own
    `Stage N: finished` line (stages whose steps run as queued jobs, recipes/stage_helpers.sh `run_jobs`), else
    the next log line, or None."""
    runs: dict[int, tuple[datetime, str, datetime | None]] = {}
    for i, (time, script, message) in enumerate(log_lines):
        end = STAGE_END.match(message)
        if end:
            if int(end.group(1)) in runs:
                started, started_message, _ = runs[int(end.group(1))]
                runs[int(end.group(1))] = (started, started_message, time)
            continue
        m = STAGE_START.match(message)
        if script == "run.sh" and m and not m.group(2).startswith("done before"):
            following = log_lines[i + 1][0] if i + 1 < len(log_lines) else None
            runs[int(m.group(1))] = (time, message, following)
    return runs


def external_corpus_dir(exp: Path, commands: dict[str, str], stage1_message: str | None) -> str | None:
    """The --corpus-dir the recipe ran with (from its steps' commands or stage 1's log line); None: `exp`/corpus."""
    if (exp / ".stage0.done").exists() or (exp / "corpus").is_dir():
        return None
    for command in commands.values():
        words = command.split()
        if "--corpus-dir" in words[:-1]:
            return words[words.index("--corpus-dir") + 1]
    m = re.search(r" of (\S+)$", stage1_message or "")
    return m.group(1) if m else None


def logged_preset(log_lines: list[tuple[datetime, str, str]]) -> str | None:
    """The preset run.sh last said it ran with (`preset: NAME ...`), None in a log from before it said so."""
    names = [m.group(1) for _, script, message in log_lines if script == "run.sh"
             for m in [re.match(r"preset: (\S+)", message)] if m]
    return names[-1] if names else None


def guess_preset(commands: dict[str, str]) -> str | None:
    """The preset of recipes/conf whose GMM settings the train_gmm step ran with; None unless exactly one."""
    words = commands.get("train_gmm", "").split()
    given = dict(zip(words, words[1:]))
    matches = []
    for conf in sorted(RECIPE_DIR.glob("conf/*.conf")):
        settings = dict(re.findall(r"\b(\w+)=([^\s;]+)", re.sub(r"#.*", "", conf.read_text())))
        if all(k in settings for k in GMM_OPTIONS) and all(
                given.get("--" + k.replace("_", "-")) == settings[k] for k in GMM_OPTIONS):
            matches.append(conf.stem)
    return matches[0] if len(matches) == 1 else None


def made_with_preset(log_lines: list[tuple[datetime, str, str]], commands: dict[str, str]) -> str | None:
    """The preset an experiment was made with, from its read run.log and commands.tsv: the one the log last names,
    else the one whose GMM settings its train_gmm step ran with (`guess_preset`); None when neither says."""
    return logged_preset(log_lines) or guess_preset(commands)


def experiment_preset(exp_dir: str | Path) -> str | None:
    """`made_with_preset` of a recipes/run.sh experiment directory."""
    exp = Path(exp_dir)
    return made_with_preset(read_run_log(exp / "log" / "run.log"), read_commands(exp / "results" / "commands.tsv"))


def experiment_status(exp_dir: str | Path) -> ExperimentStatus:
    """Read the state of a recipes/run.sh experiment directory (which must exist)."""
    exp = Path(exp_dir)
    commands = read_commands(exp / "results" / "commands.tsv")
    log_lines = read_run_log(exp / "log" / "run.log")
    runs = stage_runs(log_lines)
    corpus_dir = external_corpus_dir(exp, commands, runs[1][1] if 1 in runs else None)
    stages = []
    for stage in RECIPE_STAGES:
        done = (exp / f".stage{stage.number}.done").exists()
        state = StageState(stage, done, stage.summary, skipped=stage.number == 0 and corpus_dir is not None)
        if stage.number in runs:
            state.started, message, following = runs[stage.number]
            state.description = STAGE_START.match(message).group(2)  # type: ignore[union-attr]
            if done and following is not None:
                state.seconds = (following - state.started).total_seconds()
        stages.append(state)
    nnet = exp / "nnet"
    names = sorted(p.parent.name for p in nnet.glob("*/metrics.csv"))
    num_members = sum(m.startswith("member") for m in names)
    # Names that lead to one directory (the recipe's member1 -> baseline link) are one model, shown once.
    same_dir: dict[Path, list[str]] = {}
    for m in names:
        same_dir.setdefault((nnet / m).resolve(), []).append(m)
    groups = [sorted(group, key=lambda m: (m.startswith("member"), m)) for group in same_dir.values()]
    models = sorted(group[0] for group in groups)
    return ExperimentStatus(
        exp, stages, corpus_dir, made_with_preset(log_lines, commands), collect_scores(exp, num_members),
        training={m: read_metrics(nnet / m / "metrics.csv") for m in models},
        finished_models={m for m in models if (nnet / m / "final.pt").is_file()},
        aliases={group[0]: group[1:] for group in groups if len(group) > 1})


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _values(values: list[float | None], unit: str) -> str:
    return " / ".join("–" if v is None else f"{v:.2f}{unit}" for v in values)


def render_status(status: ExperimentStatus, preset: str | None = None) -> str:
    """The status as text: the stages table, the numbers so far and the command to continue."""
    out = [f"Experiment {status.exp_dir} (recipes/run.sh)", "", "stage  state       wall time  what"]
    for s in status.stages:
        if s.skipped:
            state, wall, what = "skipped", "", f"--corpus-dir {status.corpus_dir}"
        elif s.done:
            state, wall, what = "done", "" if s.seconds is None else _duration(s.seconds), s.description
        elif s.started is not None:
            state, wall, what = "started", "", f"{s.description} (since {s.started:%Y-%m-%d %H:%M:%S}; unfinished)"
        else:
            state, wall, what = "not done", "", s.description
        out.append(f"{s.stage.number:>5}  {state:<10}  {wall:>9}  {what}")
    out += ["", "Numbers so far:"]
    numbers = []
    res = status.scores
    if res.gmm is not None:
        parts = ["dev", "test", *(p for p in res.gmm.get("test_parts", ()) if p != "test")]
        numbers.append(f"  GMM tri2 WER {' / '.join(parts)}: {_values([res.wer('gmm', p) for p in parts], '%')}"
                       f" (LM weight {res.gmm['lmwt']})")
    curves = {m: c[-1] for m, c in status.training.items() if c}
    if curves:
        numbers.append("  dev frame accuracy at each model's last epoch (nnet/*/metrics.csv):")
        for model, (epoch, dev_acc) in curves.items():
            state = "final" if model in status.finished_models else "training"
            name = " = ".join([model, *status.aliases.get(model, [])])
            numbers.append(f"    {name:<25} {100 * dev_acc:6.2f}%  epoch {epoch}, {state}")
    scored = [system for system in SYSTEMS if any(res.accuracy.get(system, {}).values()) or res.decode.get(system)]
    if scored:
        # Every part decoded at dev's LM weight; frame accuracy on those that have a frame bank.
        wer_parts = ["dev", "test", *res.more_tests]
        acc_parts = ["dev", "test", *(p for p in res.more_tests if any(res.acc(s, p) is not None for s in scored))]
        numbers.append(f"  frame accuracy {' / '.join(acc_parts)}, WER {' / '.join(wer_parts)} (results/, decode/):")
        accs = {system: _values([res.acc(system, p) for p in acc_parts], "%") for system in scored}
        width = max(17, *(len(a) for a in accs.values()))
        for system in scored:
            wer = _values([res.wer(system, p) for p in wer_parts], "%") if res.decode.get(system) else ""
            numbers.append(f"    {system:<25} {accs[system]:<{width}}  {wer}".rstrip())
    gain = gain_recovered(res.acc("baseline", "test"), res.acc("ensemble", "test"), res.acc("student", "test"))
    if gain is not None:
        numbers.append(f"  gain recovered (test frame accuracy): {gain:.1f}% "
                       f"(paper: more than {PAPER_GAIN_RECOVERED:.0f}%)")
    out += numbers or ["  none yet"]
    command = status.continue_command(preset)
    out.append("")
    if command is None:
        out.append(f"All stages done: {status.exp_dir / 'RESULTS.md'}")
    else:
        out.append(f"Next: stage {status.next_stage}. To continue (with any other options the experiment was "
                   "started with; egs/synth/run.sh takes the same):")
        out.append(f"  {command}")
    return "\n".join(out) + "\n"
