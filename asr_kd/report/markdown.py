"""Markdown tables for results files."""

from __future__ import annotations

from typing import Any, Literal, Sequence


def format_cell(value: Any, digits: int = 2) -> str:
    """Numbers with fixed decimals, None as an en dash, everything else as text."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2,
                   align: Sequence[Literal["left", "right"]] | None = None) -> str:
    """A GitHub-flavoured markdown table; numeric columns are right-aligned unless `align` says per column."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {row!r} has {len(row)} cells, the header {len(header)}")
    if align is None:
        align = ["right" if rows and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) else "left"
                 for i in range(len(header))]
    elif len(align) != len(header):
        raise ValueError(f"{len(align)} alignments for {len(header)} columns")
    rules = ["---:" if side == "right" else "---" for side in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rules) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(v, digits) for v in row) + " |")
    return "\n".join(lines) + "\n"
