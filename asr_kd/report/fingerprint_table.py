"""Markdown for an experiment's fingerprint: its stage outputs' digests, alone or beside another experiment's."""

from __future__ import annotations

from asr_kd.report.markdown import markdown_table
from asr_kd.utils.fingerprint import Digest


def _short(digest: Digest) -> str:
    return f"`{digest.sha256[:16]}`"


def fingerprint_table(fingerprint: dict[str, Digest | None]) -> str:
    """One row per stage output: files, megabytes and the digest's first 16 hex digits ("not made" without it)."""
    rows = [(name, "–", "–", "not made") if d is None else (name, d.files, round(d.bytes / 1e6, 1), _short(d))
            for name, d in fingerprint.items()]
    return markdown_table(["stage output", "files", "MB", "sha256 (first 16 hex)"], rows, digits=1,
                          align=["left", "right", "right", "left"])


def comparison_table(mine: dict[str, Digest | None], other: dict[str, Digest | None]) -> str:
    """Both experiments' digests per stage output and whether they agree ("–" where either lacks it)."""
    def cell(digest: Digest | None) -> str:
        return "not made" if digest is None else f"{_short(digest)} ({digest.files} file{'' if digest.files == 1 else 's'})"

    rows = []
    for name, d in mine.items():
        o = other.get(name)
        verdict = "–" if d is None or o is None else ("same" if d.sha256 == o.sha256 else "**differs**")
        rows.append((name, cell(d), cell(o), verdict))
    return markdown_table(["stage output", "first", "second", "agree"], rows, align=["left"] * 4)
