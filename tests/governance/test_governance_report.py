"""The governance numbers (burden.py) and `cds-service governance-report`, exact on a
seeded history, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Any

import pytest
from flask import Flask

from cds_service.cli import main
from cds_service.config import Settings
from cds_service.governance.burden import Calls, Period, Reason, RuleNumbers, governance_report
from cds_service.governance.report import NO_REASON
from cds_service.governance.tables import Table, rules_table

from .conftest import SERVICE_ID, Clock, storage_of
from .governance_seed import MONITOR, PERIOD, PROFOUND, STALE, seed_governance


def report_of(app: Flask, config: Settings, period: Period = PERIOD) -> Any:
    storage = storage_of(app)
    return governance_report(
        storage.engine, period, config.snooze_reason_system, config.snooze_reason_codes
    )


def test_the_seeded_history_gives_exact_numbers(app: Flask, clock: Clock, config: Settings) -> None:
    seed_governance(app, clock)
    report = report_of(app, config)
    assert report.calls == Calls(calls=15, in_scope=13)
    assert report.first_counted_day == date(2025, 3, 3)
    assert report.rule(MONITOR) == RuleNumbers(
        MONITOR,
        live=5,
        live_patients=3,
        accepted=2,
        overridden=3,
        snoozes=2,
        reasons=(
            Reason("already-addressed", "Already addressed", 2),
            Reason("benefit-outweighs-risk", "Benefit outweighs risk", 1),
        ),
    )
    assert report.rule(STALE) == RuleNumbers(
        STALE, live=2, live_patients=2, overridden=1, reasons=(Reason(NO_REASON, NO_REASON, 1),)
    )
    assert report.rule(PROFOUND) == RuleNumbers(PROFOUND, silent=4, silent_patients=2)
    assert [r.code for r in report.reasons] == [
        "already-addressed",
        NO_REASON,
        "benefit-outweighs-risk",
    ]
    [w10, w11] = report.weeks
    assert (w10.week, w10.calls, w10.cards) == (
        "2025-W10",
        Calls(10, 8),
        {MONITOR: (4, 0), STALE: (1, 0), PROFOUND: (0, 3)},
    )
    assert (w10.versions, w10.new_versions) == (("k1",), ())
    assert (w11.week, w11.calls, w11.versions, w11.new_versions) == (
        "2025-W11",
        Calls(5, 5),
        ("k2",),
        ("k2",),
    )
    rates = {row[0]: row[1:4] + row[5:8] for row in rules_table(report).rows}
    assert [round(x, 1) if x else x for x in rates[MONITOR]] == [5, 33.3, 38.5, 0, 0.0, 0.0]
    assert [round(x, 1) if x else x for x in rates[PROFOUND]] == [0, 0.0, 0.0, 4, 26.7, 30.8]


def test_a_range_and_a_service_narrow_the_numbers(
    app: Flask, clock: Clock, config: Settings
) -> None:
    seed_governance(app, clock)
    second_week = report_of(app, config, Period(date(2025, 3, 10), date(2025, 3, 16), SERVICE_ID))
    assert second_week.calls == Calls(5, 5)
    assert second_week.rule(MONITOR).live == 1 and second_week.rule(MONITOR).snoozes == 1
    assert second_week.weeks[0].new_versions == ()  # k2 is the first version in this range
    other = report_of(app, config, Period(date(2025, 3, 3), date(2025, 3, 16), "other-service"))
    assert (other.calls, other.rules) == (Calls(0, 0), ())


def test_the_command_gives_the_same_numbers_as_text_csv_and_json(
    app: Flask,
    clock: Clock,
    config: Settings,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed_governance(app, clock)
    monkeypatch.setenv("CDS_DATABASE_URL", database_url)
    period = ["--from", "2025-03-03", "--to", "2025-03-16", "--service", SERVICE_ID]
    assert main(["governance-report", *period]) == 0
    text = capsys.readouterr().out
    assert "Hook calls: 15; patient in scope: 13" in text
    monitor_line = next(line for line in text.splitlines() if line.startswith(MONITOR))
    assert monitor_line.split()[:5] == [MONITOR, "5", "33.3", "38.5", "3"]
    assert main(["governance-report", *period, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    profound = next(row for row in rows if row["rule"] == PROFOUND)
    assert (profound["silent cards"], profound["silent per 100 calls"]) == ("4", "26.67")
    assert main(["governance-report", *period, "--format", "csv", "--table", "weeks"]) == 0
    weeks = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(w["week"], w["new knowledge version"]) for w in weeks if w["rule"] == MONITOR] == [
        ("2025-W10", ""),
        ("2025-W11", "k2"),
    ]
    assert main(["governance-report", *period, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["calls"], document["in_scope_calls"]) == (15, 13)
    assert document["reasons"][0] == {
        "reason": "Already addressed",
        "code": "already-addressed",
        "overrides": 2,
    }
    assert main(["governance-report", "--from", "2025-03-20", "--to", "2025-03-01"]) == 2


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "' =1"),  # spreadsheets skip the leading space: still a formula
        ("a\r\nb", "a  b"),
        ("Already addressed", "Already addressed"),
        (12, "12"),
        (None, '""'),  # an empty one-cell row is written quoted
    ],
)
def test_csv_cells_cannot_run_as_formulas(cell: Any, safe: Any) -> None:
    table = Table("reasons", "Reasons", ("reason",), ((cell,),))
    assert table.csv() == f"reason\n{safe}\n"
