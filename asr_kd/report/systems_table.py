"""A markdown table comparing distilled systems: parameters, dev/test frame accuracy, dev/test WER.

Each row reads the files the recipes already write: `<acc-prefix>_dev.json` and
`<acc-prefix>_test.json` (from `asr-kd frame-accuracy --frame-bank ... --output ...`) and
`<decode-dir>/results.json` (from hybrid decoding; "-" when the row is not decoded). A missing file
shows as "–" (its stage has not run). Parameters: the decoding's count, else counted from the
checkpoints the accuracy JSON names (summed over an ensemble's members).

The command line is `asr-kd results-table` (asr_kd/bin/results_table.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from asr_kd.models import FrameClassifier
from asr_kd.report.collect import read_json_or_none, search_choice
from asr_kd.report.markdown import markdown_table

__all__ = ["MISSING", "TableRow", "read_row", "systems_table"]

MISSING = "–"


@dataclass(frozen=True)
class TableRow:
    """One system's figures; None where the stage that makes them has not run."""

    label: str
    num_params: int | None
    dev_acc: float | None
    test_acc: float | None
    dev_wer: float | None
    test_wer: float | None
    lm_weight: str | None
    num_frames: dict[str, int]


def _count_params(checkpoints: Sequence[str]) -> int | None:
    try:
        return sum(sum(p.numel() for p in FrameClassifier.load(c).parameters()) for c in checkpoints)
    except Exception:  # a moved or foreign checkpoint only costs the column its number
        return None


def read_row(label: str, acc_prefix: str | Path, decode_dir: str | Path | None) -> TableRow:
    """The row of one system from its accuracy JSONs and (when given) its decoding results."""
    acc = {part: read_json_or_none(Path(f"{acc_prefix}_{part}.json")) for part in ("dev", "test")}
    decoded = read_json_or_none(Path(decode_dir) / "results.json") if decode_dir else None
    models = next((a["models"] for a in acc.values() if a), None) or (decoded or {}).get("models") or []
    num_params = decoded.get("num_params") if decoded else None
    return TableRow(
        label=label,
        num_params=num_params if num_params is not None else _count_params(models) if models else None,
        dev_acc=acc["dev"]["accuracy"] if acc["dev"] else None,
        test_acc=acc["test"]["accuracy"] if acc["test"] else None,
        dev_wer=decoded["dev"]["wer"] if decoded else None,
        test_wer=decoded["test"]["wer"] if decoded else None,
        lm_weight=search_choice(decoded) if decoded else None,
        num_frames={part: int(a["num_frames"]) for part, a in acc.items() if a})


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def systems_table(rows: Sequence[TableRow]) -> str:
    """The rows as a markdown table (accuracies and WERs in %)."""
    header = ["system", "parameters", "dev frame acc %", "test frame acc %", "dev WER %", "test WER %", "LM weight"]
    return markdown_table(header, [(r.label, r.num_params, _pct(r.dev_acc), _pct(r.test_acc), r.dev_wer, r.test_wer,
                                    r.lm_weight) for r in rows])
