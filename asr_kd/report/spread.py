"""Several network seeds of one experiment: their means for the paper's tables, and the spread per seed."""

from __future__ import annotations

import statistics
from typing import Any, Sequence

from asr_kd.report.collect import Results
from asr_kd.report.markdown import markdown_table

TABLE1_SYSTEMS = ("baseline", "ensemble", "student")
TABLE5_SYSTEMS = ("baseline_subset", "student_subset", "student_subset_ensemble")


def mean_of(values: Sequence[float | None]) -> float | None:
    """Mean of values measured in every run; None when one run lacks it."""
    return None if not values or None in values else statistics.fmean(values)  # type: ignore[arg-type]


def mean_sd(values: Sequence[float | None]) -> str:
    """'mean ± sd' (sample sd) of values measured in every run, '–' when one run lacks it."""
    if not values or None in values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0  # type: ignore[arg-type]
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"  # type: ignore[arg-type]


class SeedMeans:
    """The runs of several network seeds seen as one: `acc` and `wer` are means over the runs.

    Everything else (GMM, banks, commands, ...) is the first run's: the seeds share those stages.
    """

    def __init__(self, runs: Sequence[Results]):
        if not runs:
            raise ValueError("SeedMeans needs at least one run")
        self.runs = list(runs)

    def acc(self, system: str, part: str) -> float | None:
        """Mean frame accuracy (%) over the runs."""
        return mean_of([r.acc(system, part) for r in self.runs])

    def wer(self, system: str, part: str) -> float | None:
        """Mean WER (%) over the runs (the GMM's is the shared one)."""
        return mean_of([r.wer(system, part) for r in self.runs])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runs[0], name)


def gains(runs: Sequence[Results], part: str, gain_fn) -> list[float | None]:
    """The gain recovered (%) on `part` of each run."""
    return [gain_fn(r.acc("baseline", part), r.acc("ensemble", part), r.acc("student", part)) for r in runs]


def spread_tables(runs: Sequence[Results], seeds: Sequence[int], gain_fn) -> str:
    """Per seed and mean ± sd: Table 1's frame accuracies and WERs, the gain recovered, Table 5's test accuracies."""
    header = ["seed", "baseline", "ensemble", "distilled", "gain recovered %"]
    sections = []
    for part in ("test", "dev"):
        rows: list[list[Any]] = []
        for seed, run in zip(seeds, runs):
            rows.append([str(seed), *(run.acc(s, part) for s in TABLE1_SYSTEMS), gains([run], part, gain_fn)[0]])
        rows.append(["mean ± sd", *(mean_sd([r.acc(s, part) for r in runs]) for s in TABLE1_SYSTEMS),
                     mean_sd(gains(runs, part, gain_fn))])
        sections.append(f"{part.capitalize()} frame accuracy %:\n\n" + markdown_table(header, rows))
    for part in ("dev", "test", *runs[0].more_tests):
        rows = [[str(seed), *(run.wer(s, part) for s in TABLE1_SYSTEMS)] for seed, run in zip(seeds, runs)]
        rows.append(["mean ± sd", *(mean_sd([r.wer(s, part) for r in runs]) for s in TABLE1_SYSTEMS)])
        gmm = runs[0].wer("gmm", part)
        sections.append(f"{part.capitalize()} WER % (GMM tri2: {'–' if gmm is None else f'{gmm:.2f}'}):\n\n"
                        + markdown_table(header[:4], rows))
    rows = []
    for seed, run in zip(seeds, runs):
        rows.append([str(seed), *(run.acc(s, part) for s in TABLE5_SYSTEMS for part in ("train", "test"))])
    rows.append(["mean ± sd", *(mean_sd([r.acc(s, part) for r in runs]) for s in TABLE5_SYSTEMS
                                for part in ("train", "test"))])
    t5_header = ["seed"] + [f"{s} {part}" for s in TABLE5_SYSTEMS for part in ("train", "test")]
    sections.append("Table 5 frame accuracy % (3% of train):\n\n" + markdown_table(t5_header, rows))
    return "\n".join(sections)
