"""Rules assess, then word (issue 25): no function in cds_service/rules/ is over 60 lines, so
no rule decides and words in one long body again. Lines are counted from the `def` to the last
line of the body, docstring included (what a reader has to hold at once)."""

from __future__ import annotations

import ast
from pathlib import Path

RULES = Path(__file__).resolve().parents[2] / "cds_service" / "rules"
MAX_FUNCTION_LINES = 60


def _long_functions(source: str, limit: int) -> list[tuple[str, int]]:
    """(name, lines) of every function or method longer than `limit`, nested ones included."""
    return [
        (node.name, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > limit
    ]


def test_the_size_check_counts_from_def_to_the_last_line() -> None:
    def body(indent: str, lines: int) -> str:
        return "\n".join(f"{indent}x{i} = {i}" for i in range(lines))

    assert _long_functions(f"def short():\n{body('    ', 59)}\n", 60) == []  # 60 with the def
    method = f"class C:\n    def long(self):\n{body('        ', 60)}\n"
    assert _long_functions(method, 60) == [("long", 61)]


def test_no_rule_function_is_over_60_lines() -> None:
    too_long = {
        f"{path.name}:{name}": lines
        for path in sorted(RULES.glob("*.py"))
        for name, lines in _long_functions(path.read_text(), MAX_FUNCTION_LINES)
    }
    assert too_long == {}
