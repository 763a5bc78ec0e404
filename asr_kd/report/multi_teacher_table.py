"""MULTI_TEACHER.md of egs/synth/run_multi_teacher.sh: one row per teacher store and its student.

Reads <exp-dir>/soft/<teacher>_T<T>/manifest.json, results/acc_<student>_{dev,test}.json and the
GMM teacher's own top-1 stores soft/gmm_top1_{dev,test} (its argmax, compared with the bank labels).

The command line is `asr-kd multi-teacher-table` (asr_kd/bin/multi_teacher_table.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from asr_kd.report.collect import read_json_or_none
from asr_kd.report.markdown import markdown_table

__all__ = ["teacher_description", "gmm_accuracy", "multi_teacher_table"]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def teacher_description(manifest: dict) -> str:
    """Members and weights of a store's teacher, from its manifest."""
    t = manifest.get("teacher", {})
    gmms = {g["position"]: f"GMM {Path(g['path']).name} (scale {g['acoustic_scale']:g})"
            for g in t.get("gmm_teachers", [])}
    n = t.get("num_members", 0)
    dnn = iter(Path(c["path"]).parent.name for c in t.get("checkpoints", []))
    names = [gmms[i] if i in gmms else next(dnn, "?") for i in range(n)]
    weights = t.get("weights") or [1.0 / n] * n
    return " + ".join(f"{w:.3g} {name}" for w, name in zip(weights, names))


def gmm_accuracy(exp: Path, src: Path, part: str) -> float | None:
    """Frame accuracy of the GMM's argmax (the top-1 of its T=1 store) against the bank's labels."""
    store = exp / "soft" / f"gmm_top1_{part}"
    if not (store / "class_ids.npy").is_file():
        return None
    top1 = np.load(store / "class_ids.npy")[:, 0]
    labels = np.load(src / "bank" / part / "labels.npy")
    return float((top1 == labels).mean())


def multi_teacher_table(exp: Path, src: Path, train_bank: Path, teachers: Sequence[str], temperature: str) -> str:
    """The table (the hard-label baseline, then a row per teacher's store) and its notes."""
    bank = read_json_or_none(train_bank / "manifest.json") or {}
    header = ["student's teacher", "teacher members and weights", f"top-k mass at T={temperature} (k)",
              "student dev frame acc %", "student test frame acc %"]
    acc = {name: {part: (read_json_or_none(exp / "results" / f"acc_{name}_{part}.json") or {}).get("accuracy")
                  for part in ("dev", "test")} for name in ["baseline", *teachers]}
    rows = [["none (hard labels only)", "–", "–", _pct(acc["baseline"]["dev"]), _pct(acc["baseline"]["test"])]]
    for name in teachers:
        manifest = read_json_or_none(exp / "soft" / f"{name}_T{temperature}" / "manifest.json") or {}
        mass = manifest.get("mean_topk_mass")
        kept = "–" if mass is None else f"{mass:.3f} ({manifest.get('k')})"
        rows.append([name, teacher_description(manifest), kept, _pct(acc[name]["dev"]), _pct(acc[name]["test"])])
    hardware = next(((read_json_or_none(exp / "results" / f"acc_{n}_dev.json") or {}).get("hardware") for n in acc), None)
    notes = [
        "",
        f"GMM teacher alone, argmax of its posteriors vs the tri2 alignment labels: dev {_pct(gmm_accuracy(exp, src, 'dev'))}%, "
        f"test {_pct(gmm_accuracy(exp, src, 'test'))}% (the labels are this GMM's own Viterbi alignment).",
        f"Students: train bank {train_bank} ({bank.get('num_utterances')} utterances, {bank.get('num_frames')} frames); "
        f"dev/test banks of {src}. Hardware: {json.dumps(hardware)}.",
    ]
    return markdown_table(header, rows) + "\n".join(notes) + "\n"
