"""AUGMENT.md of egs/synth/run_augment.sh: in-domain and never-heard WER of baselines with and without augmentation.

Each row names a label, the model's training dir (params.json and metrics.csv: frames per epoch,
updates made; "" for an ensemble: its members' training dirs, those of the decode's model files),
its decoding dir (results.json: dev and test frame accuracy, dev, test and test-other WER at dev's
LM weight) and the training set's summary (<set>.json of `asr-kd augment-data`: the copies; "" for
the source's own train set).
Each gain names a label and the decoding dirs of a baseline, an ensemble and a student trained on
the same data: the share of the ensemble's gain over the baseline that the student recovers,
(student - baseline) / (ensemble - baseline), on test frame accuracy and on each WER (none where the
ensemble is no better than the baseline).

The command line is `asr-kd augment-table` (asr_kd/bin/augment_table.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from asr_kd.report.collect import NEVER_HEARD, read_json_or_none, read_metrics, search_choice
from asr_kd.report.markdown import markdown_table

__all__ = ["AugmentRow", "GainRow", "augment_table"]


@dataclass(frozen=True)
class AugmentRow:
    """One system: its label, training dir ("" for an ensemble), decoding dir and training set summary ("")."""

    label: str
    train_dir: str
    decode_dir: Path
    set_summary: str


@dataclass(frozen=True)
class GainRow:
    """One training set: the decoding dirs of its baseline, ensemble and student."""

    label: str
    baseline_dir: Path
    ensemble_dir: Path
    student_dir: Path


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _updates(train_dir: Path) -> int | None:
    """Updates a trainer made: the epochs its metrics.csv ended (newbob may stop before num_epochs) x steps each."""
    params = read_json_or_none(train_dir / "params.json")
    epochs = max((epoch for epoch, _ in read_metrics(train_dir / "metrics.csv")), default=None)
    return None if params is None or epochs is None else epochs * params["steps_per_epoch"]


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _member_dir(model: str, src_exp: Path) -> Path:
    """The training dir of a decoded model file; a path relative to another directory is looked up under src_exp/nnet."""
    beside = Path(model).parent
    return beside if (beside / "params.json").is_file() else src_exp / "nnet" / beside.name


def _member_updates(member: list[int | None]) -> str:
    """An ensemble's updates: "4 x 14040", or the range where newbob stopped its members at different epochs."""
    if not member:
        return "–"
    if None in member:
        return f"{len(member)} x ?"
    low, high = min(member), max(member)
    return f"{len(member)} x {low}" if low == high else f"{len(member)} x {low}-{high}"


def system_cells(row: AugmentRow, summary: dict, src_frames: int, src_exp: Path) -> list[str]:
    """One system's cells: training data, updates, frame accuracies, WERs and the never-heard / test ratio."""
    results = read_json_or_none(row.decode_dir / "results.json") or {}
    if row.train_dir:
        updates = _fmt(_updates(Path(row.train_dir)), "d")
    else:  # an ensemble: its members' updates, from the training dir of each decoded model file
        updates = _member_updates([_updates(_member_dir(m, src_exp)) for m in results.get("models", [])])
    frames = summary.get("frames", src_frames)
    wer = {part: results.get(part, {}).get("wer") for part in ("dev", "test", NEVER_HEARD)}
    acc = {part: _pct(results.get(part, {}).get("frame_accuracy")) for part in ("dev", "test")}
    ratio = wer[NEVER_HEARD] / wer["test"] if wer["test"] and wer[NEVER_HEARD] is not None else None
    copies = ", ".join(f"{name} {summary['copies'][name]['cuts']}" for name in summary.get("perturbations", [])) or "none"
    return [row.label, f"{frames} ({frames / src_frames:.2f}x)", copies, updates,
            _fmt(acc["dev"], ".2f"), _fmt(acc["test"], ".2f"),
            _fmt(wer["dev"], ".2f"), _fmt(wer["test"], ".2f"), _fmt(wer[NEVER_HEARD], ".2f"),
            _fmt(ratio, ".2f"), search_choice(results) or "–"]


def gain_cells(row: GainRow) -> list[str]:
    """(student - baseline) / (ensemble - baseline) on test frame accuracy and each WER."""
    res = [(read_json_or_none(d / "results.json") or {}) for d in (row.baseline_dir, row.ensemble_dir, row.student_dir)]
    cells = [row.label]
    for part, key in (("test", "frame_accuracy"), ("dev", "wer"), ("test", "wer"), (NEVER_HEARD, "wer")):
        b, e, s = (r.get(part, {}).get(key) for r in res)
        if None in (b, e, s):
            cells.append("–")
            continue
        scale, better = (100, 1) if key == "frame_accuracy" else (1, -1)  # WER: lower is better
        share = (f"{100 * (s - b) / (e - b):.0f}%" if better * (e - b) > 0
                 else "no ensemble gain to recover")
        cells.append(f"{scale * b:.2f} / {scale * e:.2f} / {scale * s:.2f}: {share}")
    return cells


def augment_table(src_exp: Path, rows: Sequence[AugmentRow], gains: Sequence[GainRow], commands: str | Path) -> str:
    """The whole AUGMENT.md; `commands` is the commands.tsv the table points to."""
    src_frames = (read_json_or_none(src_exp / "bank" / "train" / "manifest.json") or {})["num_frames"]
    summaries = [(read_json_or_none(Path(r.set_summary)) or {}) if r.set_summary else {} for r in rows]
    header = ["system", "training frames", "copies (cuts)", "updates", "dev frame acc %", "test frame acc %",
              "dev WER %", "test WER %", f"{NEVER_HEARD} WER %", f"{NEVER_HEARD} / test", "LM weight"]
    table = markdown_table(header, [system_cells(r, s, src_frames, src_exp) for r, s in zip(rows, summaries)],
                           align=["left", "right", "left", *["right"] * 8])
    lines = ["# Training-data augmentation and the never-heard voices\n", table.rstrip("\n")]
    if gains:
        gain_header = ["training data", "test frame acc %", "dev WER %", "test WER %", f"{NEVER_HEARD} WER %"]
        lines += ["", "## The ensemble's gain the distilled student recovers\n",
                  "baseline / ensemble / student, and (student - baseline) / (ensemble - baseline):\n",
                  markdown_table(gain_header, [gain_cells(g) for g in gains], align=["left"] * 5).rstrip("\n")]
    settings = next((s["settings"] for s in summaries if s), None)
    hardware = next((h for r in rows if (h := (read_json_or_none(r.decode_dir / "results.json") or {}).get("hardware"))),
                    {})
    lines += ["", f"Source experiment: {src_exp}. {NEVER_HEARD}: test-clean's sentences in voices of a family "
              "no training, dev or test speaker uses; decoded at the LM weight dev chose for each model.",
              f"Perturbation settings: {json.dumps(settings)}." if settings else "",
              f"Hardware: {hardware.get('cpu', '?')}, {hardware.get('cores', '?')} cores, torch "
              f"{hardware.get('torch', '?')}. Commands: {commands}."]
    return "\n".join(lines).rstrip() + "\n"
