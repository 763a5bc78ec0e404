"""How sure Table 1's WER differences are: paired bootstraps over the utterances of each decoded part."""

from __future__ import annotations

from typing import Sequence

from asr_kd.report.collect import Results, decode_dir
from asr_kd.report.markdown import markdown_table
from asr_kd.score.bootstrap import compare_wer, read_per_utt_counts, wer_interval
from asr_kd.score.wer import per_utt_path

# (system A, system B, row name): each cell is WER(B) - WER(A).
COMPARISONS = (("baseline", "student", "distilled - baseline"), ("baseline", "ensemble", "ensemble - baseline"),
               ("ensemble", "student", "distilled - ensemble"), ("gmm", "baseline", "baseline - GMM tri2"))
REPLICATES = 10000
# Table 1's systems, with the names the plot of WER by part gives them.
SYSTEMS = (("gmm", "GMM tri2"), ("baseline", "baseline"), ("ensemble", "ensemble"), ("student", "distilled"))


def pooled_counts(runs: Sequence[Results], system: str, part: str) -> dict[str, tuple[int, int]] | None:
    """Each utterance's errors and reference words summed over the runs (seeds); None when a run lacks the file."""
    paths = [per_utt_path(decode_dir(run.exp_dir, system) / "scoring", part) for run in runs]
    if not all(p.is_file() for p in paths):
        return None
    pooled: dict[str, tuple[int, int]] = {}
    for path in paths:
        for utt, (errors, words) in read_per_utt_counts(path).items():
            e, w = pooled.get(utt, (0, 0))
            pooled[utt] = (e + errors, w + words)
    return pooled


def _pooled_by_system(runs: Sequence[Results]) -> dict[str, dict[str, dict[str, tuple[int, int]] | None]]:
    """System -> part (dev, test, the later test parts) -> `pooled_counts`, each file set read once."""
    parts = ("dev", "test", *runs[0].more_tests)
    return {system: {part: pooled_counts(runs, system, part) for part in parts} for system, _ in SYSTEMS}


def significance_table(runs: Sequence[Results]) -> str:
    """B - A WER with its 95% interval and P(B better) for each comparison and part; '' when nothing is decoded."""
    pooled = _pooled_by_system(runs)
    parts = list(pooled["baseline"])
    rows = []
    for system_a, system_b, name in COMPARISONS:
        cells = []
        for part in parts:
            a, b = pooled[system_a][part], pooled[system_b][part]
            if a is None or b is None:
                cells.append(None)
                continue
            cmp = compare_wer(a, b, REPLICATES, names=(f"{system_a} {part}", f"{system_b} {part}"))
            lo, hi = cmp.interval_diff
            cells.append(f"{cmp.wer_b - cmp.wer_a:+.2f} [{lo:+.2f}, {hi:+.2f}], P {cmp.prob_b_better:.2f}")
        if any(c is not None for c in cells):
            rows.append([name, *cells])
    if not rows:
        return ""
    seeds_note = (f" Each utterance's errors are summed over the {len(runs)} network seeds, so a cell is the "
                  "difference of the seeds' mean WERs; the interval is the test set's sampling alone (the seeds' own "
                  "spread is in 'Spread over network seeds')." if len(runs) > 1 else "")
    return (markdown_table(["B - A", *(f"{p} WER" for p in parts)], rows)
            + "\nEach cell: WER(B) - WER(A) in absolute % [its 95% interval], P(B better). "
            f"The utterances of each part resampled with replacement {REPLICATES} times (seed 0), both systems scored "
            "on each resample (Bisani & Ney 2004; `asr-kd compare-wer`): the difference's 2.5th and 97.5th "
            "percentiles, and P(B better), the share of resamples in which B makes fewer errors than A (near 0.5: this "
            f"test set cannot tell them apart; near 0 or 1: it can).{seeds_note}\n")


def wer_intervals(runs: Sequence[Results]) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Part -> system label -> (WER %, 95% low, high) of the errors summed over the runs, for each system in all."""
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    pooled = _pooled_by_system(runs)
    for part in pooled["baseline"]:
        for system, label in SYSTEMS:
            if pooled[system][part] is not None:
                out.setdefault(part, {})[label] = wer_interval(pooled[system][part], REPLICATES)
    return out
