"""Governance console and report over a large card history (issue 26: under 1 s over
1,000,000 card-history rows, on SQLite and PostgreSQL).

    python -m benchmarks.governance                       # 1,000,000 cards, SQLite and PostgreSQL
    python -m benchmarks.governance --rows 100000 --databases sqlite

Seeds a year of history for three services (16 rules, a fifth of them silent, a knowledge
version change mid-year, 40,000 patients, 15% of live cards with feedback, the day's calls),
the daily counts as the history writer keeps them, then times, each 5 times (median and
slowest): the report for the whole year and every service, for one service over 4 weeks, the
console page (HTML, through the Flask app) and a CSV export. PostgreSQL is used when it
answers on 127.0.0.1:5432 (database `test`, a schema of its own, dropped afterwards).
Writes results/governance.md. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from cds_service.config import load_config
from cds_service.governance.burden import Period, governance_report
from cds_service.governance.database import create_database_engine, migrate
from cds_service.governance.models import CardFeedback, IssuedCard
from cds_service.governance.outcomes import recount
from cds_service.rules.catalogue import CATALOGUE
from cds_service.runtime import runtime

RESULTS = Path(__file__).parent / "results" / "governance.md"
NOTE = """\
How the console answers: counts, rates and weekly trends from daily counts of calls, cards and
outcomes kept as data arrives (a year is ~5,500 rows, not 1,000,000); distinct patients from
the card history's governance index (rule, mode, patient, issued_at, service), read in its
order without sorting the cards (SQLite: one pass over the index whatever the range, ~0.25 s
at 1,000,000 cards).
"""
SERVICES = ("leukopenia-patient-view", "leukopenia-order-select", "leukopenia-order-sign")
START = date(2025, 1, 1)
DAYS = 365
PATIENTS = 40_000
CHUNK = 20_000
SNOOZE_SYSTEM = "https://leukopenia-cds.example.org/CodeSystem/override-reason"
REASONS = ("already-addressed", "counts-reviewed", "benefit-outweighs-risk", None)


def _cards(rows: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    rules = [row.id for row in CATALOGUE]
    silent = set(rules[::5])
    for _ in range(rows):
        day = rng.randrange(DAYS)
        issued = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(
            days=day, seconds=rng.randrange(86400)
        )
        rule = rng.choice(rules)
        yield {
            "card_uuid": str(uuid.UUID(int=rng.getrandbits(128))),
            "service_id": rng.choice(SERVICES),
            "hook": "patient-view",
            "hook_instance": "h",
            "rule_id": rule,
            "knowledge_version": "k1" if day < DAYS // 2 else "k2",
            "indicator": rng.choice(("info", "warning", "warning", "critical")),
            "patient_key": f"{rng.randrange(PATIENTS):064x}",
            "issued_at": issued,
            "mode": "silent" if rule in silent else "live",
            "all_live_answer": None,
        }


def seed(engine: Engine, rows: int) -> float:
    """The history, its feedback and the daily counts; returns the seconds it took."""
    started = time.perf_counter()
    rng = random.Random(26)
    cards = IssuedCard.metadata.tables[IssuedCard.__tablename__]
    feedback = CardFeedback.metadata.tables[CardFeedback.__tablename__]
    batch: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    with engine.begin() as connection:
        for card in _cards(rows, rng):
            batch.append(card)
            if card["mode"] == "live" and rng.random() < 0.15:
                reason = rng.choice(REASONS)
                accepted = reason is None and rng.random() < 0.5
                answers.append(
                    {
                        "service_id": card["service_id"],
                        "card_uuid": card["card_uuid"],
                        "outcome": "accepted" if accepted else "overridden",
                        "outcome_at": card["issued_at"],
                        "accepted_suggestions": None,
                        "reason_system": SNOOZE_SYSTEM if reason else None,
                        "reason_code": reason,
                        "reason_display": None,
                        "user_comment": None,
                        "unknown_card": False,
                        "received_at": card["issued_at"],
                        "rule_id": card["rule_id"],
                        "card_indicator": card["indicator"],
                        "card_issued_at": card["issued_at"],
                    }
                )
            if len(batch) >= CHUNK:
                connection.execute(cards.insert(), batch)
                batch.clear()
            if len(answers) >= CHUNK:
                connection.execute(feedback.insert(), answers)
                answers.clear()
        for table, rest in ((cards, batch), (feedback, answers)):
            if rest:
                connection.execute(table.insert(), rest)
        # The daily counts as the history writer keeps them (migration 0003 fills them so).
        connection.execute(
            text(
                "INSERT INTO cds_daily_cards (day, service_id, rule_id, mode, "
                "knowledge_version, cards) SELECT date(issued_at), service_id, rule_id, mode, "
                "knowledge_version, COUNT(*) FROM cds_issued_card GROUP BY date(issued_at), "
                "service_id, rule_id, mode, knowledge_version"
            )
        )
        calls = [
            {
                "day": START + timedelta(days=day),
                "service_id": service,
                "calls": 4000,
                "in_scope_calls": 1200,
            }
            for day in range(DAYS)
            for service in SERVICES
        ]
        recount(connection)  # the outcome counts as storing the feedback would have kept them
        connection.execute(text("DELETE FROM cds_daily_calls"))
        connection.execute(
            text(
                "INSERT INTO cds_daily_calls (day, service_id, calls, in_scope_calls) "
                "VALUES (:day, :service_id, :calls, :in_scope_calls)"
            ),
            calls,
        )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))  # as autovacuum would have
    else:
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))
    return time.perf_counter() - started


def _timed(work: Callable[[], object], repeats: int = 5) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def measure(url: str, rows: int) -> list[tuple[str, float, float]]:
    migrate(url, 60)
    engine = create_database_engine(url, 60)
    seconds = seed(engine, rows)
    codes = ("already-addressed", "counts-reviewed")
    year = Period(START, START + timedelta(days=DAYS - 1))
    month = Period(date(2025, 6, 2), date(2025, 6, 29), SERVICES[0])
    figures = [("seeding (not a console figure)", seconds * 1000, seconds * 1000)]
    figures.append(
        (
            "report: a year, every service",
            *_timed(lambda: governance_report(engine, year, SNOOZE_SYSTEM, codes)),
        )
    )
    figures.append(
        (
            "report: 4 weeks, one service",
            *_timed(lambda: governance_report(engine, month, SNOOZE_SYSTEM, codes)),
        )
    )
    from cds_service import create_app

    app = create_app(
        {"ENV": "testing", "DATABASE_URL": url, "ADMIN_PASSWORD": "benchmark-password"}
    )
    client = app.test_client()
    auth = {"Authorization": "Basic YWRtaW46YmVuY2htYXJrLXBhc3N3b3Jk"}  # admin:benchmark-password

    def page(path: str) -> Callable[[], object]:
        def get() -> object:
            response = client.get(path, headers=auth)
            assert response.status_code == 200, response.status_code
            return response

        return get

    figures.append(
        (
            "console page: a year, every service",
            *_timed(page("/admin/?from=2025-01-01&to=2025-12-31")),
        )
    )
    figures.append(
        (
            "console page: 4 weeks, one service",
            *_timed(page(f"/admin/?from=2025-06-02&to=2025-06-29&service={SERVICES[0]}")),
        )
    )
    figures.append(
        (
            "CSV export of the weekly trends: a year",
            *_timed(page("/admin/export/weeks.csv?from=2025-01-01&to=2025-12-31")),
        )
    )
    runtime(app).storage.close()
    engine.dispose()
    return figures


def _postgres_schema() -> tuple[str, Callable[[], None]] | None:
    import psycopg

    for user in ("postgres", "root"):
        try:
            dsn = {"host": "127.0.0.1", "port": 5432, "dbname": "test", "user": user}
            schema = f"bench_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(**dsn, autocommit=True, connect_timeout=2) as connection:
                connection.execute(f'CREATE SCHEMA "{schema}"')
        except psycopg.Error:
            continue

        def drop(dsn: dict[str, Any] = dsn, schema: str = schema) -> None:
            with psycopg.connect(**dsn, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA "{schema}" CASCADE')

        url = f"postgresql+psycopg://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        return url, drop
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_config({"ENV": "testing"})  # the settings are valid here before anything is seeded
    lines = [
        f"# Governance console and report over {args.rows:,} card-history rows",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m benchmarks.governance --rows "
        f"{args.rows}`. Milliseconds: median and slowest of 5. Machine load average (1, 5, "
        f"15 min) at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        *NOTE.splitlines(),
        "",
        "| database | figure | median ms | slowest ms |",
        "|---|---|---|---|",
    ]
    for database in args.databases.split(","):
        if database == "sqlite":
            folder = tempfile.mkdtemp(prefix="cds-governance-")
            figures = measure(f"sqlite:///{folder}/cds.sqlite3", args.rows)
        else:
            found = _postgres_schema()
            if found is None:
                print("PostgreSQL not answering on 127.0.0.1:5432: skipped")
                continue
            url, drop = found
            try:
                figures = measure(url, args.rows)
            finally:
                drop()
        for name, median, slowest in figures:
            line = f"| {database} | {name} | {median:.0f} | {slowest:.0f} |"
            print(line, flush=True)
            lines.append(line)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
