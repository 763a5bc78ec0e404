"""Reading back the markdown tables that the report, the recipes and the benchmarks write."""

from __future__ import annotations

import re

# A cell of a |---|:--:| line: dashes, with a colon either side where aligned.
_SEPARATOR_CELL = re.compile(r":?-+:?")


def table_rows(md: str) -> list[list[str]]:
    """The cells of every table row in `md`, header rows included, the |---| lines left out (a row of empty
    cells is a row)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in md.splitlines() if line.lstrip().startswith("|")]
    return [row for row in rows if not all(_SEPARATOR_CELL.fullmatch(c) for c in row)]


def table_row(md: str, name: str) -> list[str]:
    """The cells of the first table row whose first cell is `name`."""
    for row in table_rows(md):
        if row[0] == name:
            return row
    raise AssertionError(f"no row {name!r} in\n{md}")
