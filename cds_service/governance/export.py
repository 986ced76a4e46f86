"""Values written to the CSV and text reports, made harmless to the programs that open them.

Override reason codes (and a foreign code's system) come from feedback, that is from any CDS
client: `=HYPERLINK(...)` would run as a formula in a spreadsheet, a line break would forge a
row, and an escape sequence would rewrite the operator's terminal. So every cell of a CSV or
text report passes through here:

- control characters (C0, DEL, C1, and the Unicode line and paragraph separators) become
  spaces, and bidirectional overrides (which make text read backwards) are dropped;
- a cell starting with `=`, `+`, `-`, `@` (after any leading spaces, which spreadsheets skip)
  gets a leading `'`, which spreadsheets show as text (OWASP "CSV injection"). Numbers are
  written by the report itself and stay numbers.

JSON output needs neither: the JSON writer escapes control characters and nothing evaluates it.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_BIDI = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = re.compile(r"\s*[=+\-@]")


def printable(value: object) -> str:
    """`value` as one line of visible text: control characters become spaces."""
    return _BIDI.sub("", _CONTROL.sub(" ", str(value)))


def spreadsheet_cell(value: object) -> object:
    """A CSV cell no spreadsheet runs as a formula; ints and floats are left as they are."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    text = printable(value)
    return "'" + text if _FORMULA_START.match(text) else text
