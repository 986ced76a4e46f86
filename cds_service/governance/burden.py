"""The governance numbers a CDS committee reads (issue 26), for a date range and a service:
per rule, live and silent firings per 100 hook calls and per 100 in-scope calls, distinct
patients, suggestions accepted, overrides by reason and snoozes; a weekly trend per rule with
the knowledge versions in force; the top override reasons. The console (/admin/) and
`cds-service governance-report` both show this.

Where the numbers come from, so that they answer in well under a second over millions of
cards (benchmarks/governance.py): counts and trends from the daily counts kept as cards and
calls are recorded (models.DailyCards, DailyCalls); distinct patients from the card history
through an index that holds every column the count reads; outcomes from the feedback, the
latest per card (as in report.py), joined to its card.

Days are UTC days; weeks are ISO weeks (Monday to Sunday). A card counts on the day it was
issued; its outcome counts with it, whenever the feedback came. Calls were not counted before
migration 0003: rates over days without counted calls are left out ("-"), never guessed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    Executable,
    Row,
    String,
    bindparam,
    cast,
    func,
    select,
    text,
)

from cds_service.governance.models import (
    DailyCalls,
    DailyCards,
    DailyOutcomes,
    IssuedCard,
    UTCDateTime,
)
from cds_service.governance.report import ReasonCount as Reason
from cds_service.governance.report import _reason_code, _reason_display, iso_week

MODES = ("live", "silent")


MAX_DAYS = 3 * 366  # a committee looks at weeks to a year or two; more is a mistyped date


@dataclass(frozen=True)
class Period:
    first: date
    last: date  # inclusive
    service_id: str | None = None  # None: every service

    def __post_init__(self) -> None:
        if not 0 < self.days <= MAX_DAYS or self.last >= date.max - timedelta(days=7):
            raise ValueError(f"a period is 1 to {MAX_DAYS} days, from before to after")

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class Calls:
    calls: int = 0
    in_scope: int = 0

    def per_100(self, cards: int) -> float | None:
        return _per_100(cards, self.calls)

    def per_100_in_scope(self, cards: int) -> float | None:
        return _per_100(cards, self.in_scope)


@dataclass(frozen=True)
class RuleNumbers:
    rule_id: str
    live: int = 0
    silent: int = 0
    live_patients: int = 0
    silent_patients: int = 0
    accepted: int = 0
    overridden: int = 0
    snoozes: int = 0  # overrides with a snoozing reason on a non-critical card
    reasons: tuple[Reason, ...] = ()

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.live if self.live else None


@dataclass(frozen=True)
class Week:
    week: str  # ISO week, "2025-W10"
    monday: date
    calls: Calls
    # Per rule: (live, silent) cards.
    cards: dict[str, tuple[int, int]] = field(default_factory=dict)
    versions: tuple[str, ...] = ()  # knowledge versions of the week's cards, oldest first
    new_versions: tuple[str, ...] = ()  # versions first seen this week (after the first week)


@dataclass(frozen=True)
class GovernanceReport:
    period: Period
    calls: Calls
    first_counted_day: date | None  # the first day of the period with counted calls
    rules: tuple[RuleNumbers, ...]
    weeks: tuple[Week, ...]
    reasons: tuple[Reason, ...]  # every rule's overrides by reason, most frequent first

    def rule(self, rule_id: str) -> RuleNumbers:
        return next(r for r in self.rules if r.rule_id == rule_id)


def governance_report(
    engine: Engine, period: Period, snooze_system: str, snooze_codes: Collection[str]
) -> GovernanceReport:
    with engine.connect() as connection:
        daily_calls = connection.execute(_daily_calls(period)).all()
        daily_cards = connection.execute(_daily_cards(period)).all()
        patients = connection.execute(_distinct_patients(period, connection.dialect.name)).all()
        outcomes = connection.execute(_latest_outcomes(period)).all()
    calls = Calls(sum(r.calls for r in daily_calls), sum(r.in_scope_calls for r in daily_calls))
    numbers: dict[str, dict[str, int]] = defaultdict(Counter)
    for row in daily_cards:
        numbers[row.rule_id][row.mode] += row.cards
    for row in patients:
        numbers[row.rule_id][f"{row.mode}_patients"] += row.patients
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for row in outcomes:
        if not row.cards:
            continue  # a count every card has moved out of
        counts = numbers[row.rule_id]
        counts[row.outcome] += row.cards
        if row.outcome != "overridden":
            continue
        code = _reason_code(row.reason_system or None, row.reason_code or None)
        reasons[row.rule_id][code] += row.cards
        snoozing = row.reason_system == snooze_system and row.reason_code in snooze_codes
        if snoozing and row.indicator != "critical":
            counts["snoozes"] += row.cards
    rules = tuple(
        RuleNumbers(
            rule_id=rule_id,
            live=counts["live"],
            silent=counts["silent"],
            live_patients=counts["live_patients"],
            silent_patients=counts["silent_patients"],
            accepted=counts["accepted"],
            overridden=counts["overridden"],
            snoozes=counts["snoozes"],
            reasons=_reasons(reasons[rule_id]),
        )
        for rule_id, counts in sorted(numbers.items())
    )
    everything: Counter[str] = sum(reasons.values(), Counter())
    return GovernanceReport(
        period=period,
        calls=calls,
        first_counted_day=min((r.day for r in daily_calls), default=None),
        rules=rules,
        weeks=_weeks(period, daily_calls, daily_cards),
        reasons=_reasons(everything),
    )


def _per_100(count: int, denominator: int) -> float | None:
    return 100 * count / denominator if denominator else None


def _bounds(period: Period) -> tuple[datetime, datetime]:
    start = datetime.combine(period.first, time.min, UTC)
    return start, start + timedelta(days=period.days)


def _of_service(column: Any, period: Period) -> list[Any]:
    """The WHERE condition of one service, or none for every service."""
    return [] if period.service_id is None else [column == period.service_id]


def _total(column: Any) -> Any:
    # PostgreSQL sums a bigint as numeric (a Decimal in Python): cast back to a whole number.
    return cast(func.sum(column), BigInteger)


def _daily_calls(period: Period) -> Executable:
    return (
        select(
            DailyCalls.day,
            _total(DailyCalls.calls).label("calls"),
            _total(DailyCalls.in_scope_calls).label("in_scope_calls"),
        )
        .where(DailyCalls.day >= period.first, DailyCalls.day <= period.last)
        .where(*_of_service(DailyCalls.service_id, period))
        .group_by(DailyCalls.day)
    )


def _daily_cards(period: Period) -> Executable:
    return (
        select(
            DailyCards.day,
            DailyCards.rule_id,
            DailyCards.mode,
            DailyCards.knowledge_version,
            _total(DailyCards.cards).label("cards"),
        )
        .where(DailyCards.day >= period.first, DailyCards.day <= period.last)
        .where(*_of_service(DailyCards.service_id, period))
        .group_by(DailyCards.day, DailyCards.rule_id, DailyCards.mode, DailyCards.knowledge_version)
    )


# SQLite: COUNT(DISTINCT) read from the governance index, in its order (rule, mode, patient),
# needs no sort: 0.26 s for a year of 1,000,000 cards. Left to itself the planner took the
# issued_at index, read every card's row and sorted them (15.7 s); SQLAlchemy renders no
# index hint for SQLite, hence the text.
_SQLITE_PATIENTS = text(
    "SELECT rule_id, mode, COUNT(DISTINCT patient_key) AS patients "
    "FROM cds_issued_card INDEXED BY ix_cds_issued_card_governance "
    "WHERE issued_at >= :start AND issued_at < :end "
    "AND (:service IS NULL OR service_id = :service) GROUP BY rule_id, mode"
).bindparams(
    bindparam("start", type_=UTCDateTime),
    bindparam("end", type_=UTCDateTime),
    bindparam("service", type_=String),
)


def _distinct_patients(period: Period, dialect: str) -> Executable:
    start, end = _bounds(period)
    if dialect == "sqlite":
        return _SQLITE_PATIENTS.bindparams(start=start, end=end, service=period.service_id)
    # PostgreSQL: distinct (rule, mode, patient) first, then counted.
    pairs = (
        select(IssuedCard.rule_id, IssuedCard.mode, IssuedCard.patient_key)
        .where(IssuedCard.issued_at >= start, IssuedCard.issued_at < end)
        .where(*_of_service(IssuedCard.service_id, period))
        .distinct()
        .subquery()
    )
    return select(pairs.c.rule_id, pairs.c.mode, func.count().label("patients")).group_by(
        pairs.c.rule_id, pairs.c.mode
    )


def _latest_outcomes(period: Period) -> Executable:
    """Per rule, card indicator, outcome and reason: the cards issued in the period whose
    latest feedback is that (governance/outcomes.py keeps these counts)."""
    columns = (
        DailyOutcomes.rule_id,
        DailyOutcomes.indicator,
        DailyOutcomes.outcome,
        DailyOutcomes.reason_system,
        DailyOutcomes.reason_code,
    )
    return (
        select(*columns, _total(DailyOutcomes.cards).label("cards"))
        .where(DailyOutcomes.day >= period.first, DailyOutcomes.day <= period.last)
        .where(*_of_service(DailyOutcomes.service_id, period))
        .group_by(*columns)
    )


def _weeks(
    period: Period, daily_calls: Sequence[Row[Any]], daily_cards: Sequence[Row[Any]]
) -> tuple[Week, ...]:
    mondays = []
    monday = _monday(period.first)
    while monday <= period.last:
        mondays.append(monday)
        monday += timedelta(days=7)
    calls: dict[date, Counter[str]] = defaultdict(Counter)
    for row in daily_calls:
        calls[_monday(row.day)].update(calls=row.calls, in_scope=row.in_scope_calls)
    cards: dict[date, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    versions: dict[date, dict[str, None]] = defaultdict(dict)  # ordered sets
    first_seen: dict[str, date] = {}
    for row in sorted(daily_cards, key=lambda r: r.day):
        week = _monday(row.day)
        cards[week][row.rule_id][row.mode] += row.cards
        versions[week][row.knowledge_version] = None
        first_seen.setdefault(row.knowledge_version, week)
    first_week = min(first_seen.values(), default=None)
    return tuple(
        Week(
            week=iso_week(monday),
            monday=monday,
            calls=Calls(calls[monday]["calls"], calls[monday]["in_scope"]),
            cards={rule: (n["live"], n["silent"]) for rule, n in sorted(cards[monday].items())},
            versions=tuple(versions[monday]),
            new_versions=tuple(v for v, week in first_seen.items() if week == monday != first_week),
        )
        for monday in mondays
    )


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _reasons(counts: Counter[str]) -> tuple[Reason, ...]:
    return tuple(
        Reason(code, _reason_display(code), count)
        for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    )
