"""Markdown tables for the results files."""

import pytest

from asr_kd.report.markdown import markdown_table


def test_markdown_table_right_aligns_numbers_and_formats_decimals():
    table = markdown_table(["system", "WER %"], [["baseline", 10.912], ["ensemble", None]])
    lines = table.splitlines()
    assert lines[0] == "| system | WER % |"
    assert lines[1] == "|---|---:|"
    assert lines[2] == "| baseline | 10.91 |"
    assert lines[3] == "| ensemble | – |"


def test_markdown_table_rejects_a_short_row():
    with pytest.raises(ValueError, match="1 cells"):
        markdown_table(["a", "b"], [["only one"]])
