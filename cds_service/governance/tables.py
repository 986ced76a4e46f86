"""The governance report as tables (rules, weeks, override reasons), each written as text,
CSV or JSON: the same tables the console shows and exports, and `cds-service
governance-report` prints, so every place gives the same numbers.

Every CSV cell and text line passes through governance/export.py: override reason codes come
from clients, and a cell starting with `=`, `+`, `-` or `@` would run as a formula.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cds_service.config import Settings
from cds_service.governance.burden import (
    GovernanceReport,
    Period,
    RuleNumbers,
    Week,
    governance_report,
)
from cds_service.governance.database import create_database_engine, migrate
from cds_service.governance.export import printable, spreadsheet_cell

Cell = str | int | float | None


@dataclass(frozen=True)
class Table:
    name: str  # rules, weeks, reasons
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows([[_csv_cell(cell) for cell in row] for row in self.rows])
        return out.getvalue()

    def text(self) -> str:
        shown = [self.header, *([_shown(cell) for cell in row] for row in self.rows)]
        widths = [max(len(row[i]) for row in shown) for i in range(len(self.header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in shown]
        return f"{self.title}\n" + "".join(line.rstrip() + "\n" for line in lines)

    def records(self) -> list[dict[str, Cell]]:
        return [dict(zip(self.header, row, strict=True)) for row in self.rows]


def _plain(cell: Cell) -> Cell:
    return round(cell, 2) if isinstance(cell, float) else cell


def _csv_cell(cell: Cell) -> object:
    return None if cell is None else spreadsheet_cell(_plain(cell))


def _shown(cell: Cell) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, float):
        return f"{cell:.1f}"
    return printable(cell)


def _reasons_cell(numbers: RuleNumbers) -> str:
    return "; ".join(f"{r.display}: {r.count}" for r in numbers.reasons)


def rules_table(report: GovernanceReport) -> Table:
    calls = report.calls
    rows = tuple(
        (
            r.rule_id,
            r.live,
            calls.per_100(r.live),
            calls.per_100_in_scope(r.live),
            r.live_patients,
            r.silent,
            calls.per_100(r.silent),
            calls.per_100_in_scope(r.silent),
            r.silent_patients,
            r.accepted,
            None if r.acceptance is None else 100 * r.acceptance,
            r.overridden,
            r.snoozes,
            _reasons_cell(r),
        )
        for r in report.rules
    )
    header = (
        "rule",
        "live cards",
        "live per 100 calls",
        "live per 100 in-scope calls",
        "live patients",
        "silent cards",
        "silent per 100 calls",
        "silent per 100 in-scope calls",
        "silent patients",
        "accepted",
        "accepted % of live",
        "overridden",
        "snoozes",
        "override reasons",
    )
    return Table("rules", "Per rule", header, rows)


def weeks_table(report: GovernanceReport, rule_id: str | None = None) -> Table:
    rules = [rule_id] if rule_id else [r.rule_id for r in report.rules]
    rows = tuple(
        _week_row(week, rule) for rule in rules for week in report.weeks if rule is not None
    )
    header = (
        "rule",
        "week",
        "live cards",
        "silent cards",
        "calls",
        "in-scope calls",
        "live per 100 calls",
        "silent per 100 calls",
        "knowledge versions",
        "new knowledge version",
    )
    title = f"Weekly trend of {rule_id}" if rule_id else "Weekly trend per rule"
    return Table("weeks", title, header, rows)


def _week_row(week: Week, rule: str) -> tuple[Cell, ...]:
    live, silent = week.cards.get(rule, (0, 0))
    return (
        rule,
        week.week,
        live,
        silent,
        week.calls.calls,
        week.calls.in_scope,
        week.calls.per_100(live),
        week.calls.per_100(silent),
        " ".join(week.versions),
        " ".join(week.new_versions),
    )


def reasons_table(report: GovernanceReport) -> Table:
    rows = tuple((r.display, r.code, r.count) for r in report.reasons)
    return Table("reasons", "Top override reasons", ("reason", "code", "overrides"), rows)


TABLES: dict[str, Callable[[GovernanceReport], Table]] = {
    "rules": rules_table,
    "weeks": weeks_table,
    "reasons": reasons_table,
}


def summary_lines(report: GovernanceReport) -> list[str]:
    period = report.period
    counted = report.first_counted_day
    return [
        f"Governance report {period.first.isoformat()} to {period.last.isoformat()}, "
        f"service {period.service_id or 'all services'}",
        f"Hook calls: {report.calls.calls}; patient in scope: {report.calls.in_scope}"
        + (f" (calls counted from {counted.isoformat()})" if counted else " (none counted)"),
    ]


def render_text(report: GovernanceReport, tables: Sequence[Table]) -> str:
    return "\n".join(["\n".join(summary_lines(report)) + "\n", *(t.text() for t in tables)])


def render_json(report: GovernanceReport, tables: Sequence[Table]) -> str:
    document: dict[str, Any] = {
        "from": report.period.first.isoformat(),
        "to": report.period.last.isoformat(),
        "service": report.period.service_id,
        "calls": report.calls.calls,
        "in_scope_calls": report.calls.in_scope,
        **{table.name: table.records() for table in tables},
    }
    return json.dumps(document, indent=2) + "\n"


def governance_report_main(
    config: Settings, period: Period, output_format: str = "text", table: str | None = None
) -> str:
    """The `cds-service governance-report` command. Text and JSON give every table (or the
    one named); CSV gives one table (default: rules), as a spreadsheet opens one."""
    migrate(config.database_url)  # a new database gives an empty report, not an error
    engine = create_database_engine(config.database_url)
    try:
        report = governance_report(
            engine, period, config.snooze_reason_system, config.snooze_reason_codes
        )
    finally:
        engine.dispose()
    names = [table] if table else list(TABLES)
    tables = [TABLES[name](report) for name in names]
    if output_format == "csv":
        return TABLES[table or "rules"](report).csv()
    if output_format == "json":
        return render_json(report, tables)
    return render_text(report, tables)
