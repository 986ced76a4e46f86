"""Governance numbers: per rule and ISO week, how often cards were shown, accepted and
overridden, and why they were overridden.

A card counts in the week it was shown, with the outcome of its latest feedback, so each card
is counted once however often the EHR re-sends feedback. Acceptance rate = accepted / shown
(cards with no feedback were ignored, which the spec says clients do not report).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time

from sqlalchemy import Engine, select

from cds_service.cards import OVERRIDE_REASONS, OVERRIDE_SYSTEM
from cds_service.governance.database import create_database_engine, migrate
from cds_service.governance.export import printable, spreadsheet_cell
from cds_service.governance.models import CardFeedback, IssuedCard
from cds_service.governance.store import Storage

NO_REASON = "(no coded reason)"


@dataclass(frozen=True)
class ReasonCount:
    code: str
    display: str
    count: int


@dataclass(frozen=True)
class RuleWeekStats:
    rule_id: str
    week: str  # ISO week, e.g. "2025-W07"
    shown: int
    accepted: int
    overridden: int
    override_reasons: tuple[ReasonCount, ...]

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.shown if self.shown else None

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "acceptance_rate": self.acceptance_rate}


def iso_week(moment: date) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def feedback_report(source: Storage | Engine, since: date | None = None) -> list[RuleWeekStats]:
    engine = source.engine if isinstance(source, Storage) else source
    cards = select(IssuedCard.card_uuid, IssuedCard.rule_id, IssuedCard.issued_at)
    feedback = (
        select(
            CardFeedback.card_uuid,
            CardFeedback.outcome,
            CardFeedback.reason_system,
            CardFeedback.reason_code,
        )
        .join(IssuedCard, IssuedCard.card_uuid == CardFeedback.card_uuid)
        # Received order, the service's own clock: a client's outcomeTimestamp (2099, say)
        # must not decide which outcome is a card's latest.
        .order_by(CardFeedback.received_at, CardFeedback.id)
    )
    if since is not None:
        start = datetime.combine(since, time.min, UTC)
        cards = cards.where(IssuedCard.issued_at >= start)
        feedback = feedback.where(IssuedCard.issued_at >= start)
    with engine.connect() as connection:
        card_rows = connection.execute(cards).all()
        # Ordered oldest first, so the last one written per card is its latest outcome.
        latest = {row.card_uuid: row for row in connection.execute(feedback)}

    shown: Counter[tuple[str, str]] = Counter()
    outcomes: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    reasons: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for card in card_rows:
        key = (card.rule_id, iso_week(card.issued_at))
        shown[key] += 1
        outcome = latest.get(card.card_uuid)
        if outcome is None:
            continue
        outcomes[key][outcome.outcome] += 1
        if outcome.outcome == "overridden":
            reasons[key][_reason_code(outcome.reason_system, outcome.reason_code)] += 1
    return [
        RuleWeekStats(
            rule_id=rule_id,
            week=week,
            shown=shown[(rule_id, week)],
            accepted=outcomes[(rule_id, week)]["accepted"],
            overridden=outcomes[(rule_id, week)]["overridden"],
            override_reasons=tuple(
                ReasonCount(code=code, display=_reason_display(code), count=count)
                for code, count in sorted(
                    reasons[(rule_id, week)].items(), key=lambda item: (-item[1], item[0])
                )
            ),
        )
        for rule_id, week in sorted(shown)
    ]


def _reason_code(system: str | None, code: str | None) -> str:
    """The reason's code; a code of another system keeps its system, so that it cannot pass
    for one of ours."""
    if not code:
        return NO_REASON
    return code if system == OVERRIDE_SYSTEM else f"{system}|{code}"


def _reason_display(code: str) -> str:
    """Displays come from the service's own reason catalogue, never from feedback: any
    client could otherwise rename a reason on the dashboard for everyone."""
    return OVERRIDE_REASONS.get(code, code)


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _reasons_text(stats: RuleWeekStats) -> str:
    return "; ".join(f"{r.display}: {r.count}" for r in stats.override_reasons)


def render_text(stats: list[RuleWeekStats]) -> str:
    if not stats:
        return "No cards in the period.\n"
    header = ("rule", "week", "shown", "accepted", "overridden", "acceptance", "override reasons")
    rows = [header] + [
        (
            s.rule_id,
            s.week,
            str(s.shown),
            str(s.accepted),
            str(s.overridden),
            _percent(s.acceptance_rate),
            _reasons_text(s),
        )
        for s in stats
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = (
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    )
    return "".join(printable(line.rstrip()) + "\n" for line in lines)


def render_json(stats: list[RuleWeekStats]) -> str:
    return json.dumps([s.as_dict() for s in stats], indent=2) + "\n"


def render_csv(stats: list[RuleWeekStats]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "rule_id",
            "week",
            "shown",
            "accepted",
            "overridden",
            "acceptance_rate",
            "override_reasons",
        ]
    )
    for s in stats:
        rate = "" if s.acceptance_rate is None else f"{s.acceptance_rate:.4f}"
        reasons = "; ".join(f"{r.code}={r.count}" for r in s.override_reasons)
        row = [s.rule_id, s.week, s.shown, s.accepted, s.overridden, rate, reasons]
        writer.writerow([spreadsheet_cell(cell) for cell in row])
    return out.getvalue()


RENDERERS: dict[str, Callable[[list[RuleWeekStats]], str]] = {
    "text": render_text,
    "json": render_json,
    "csv": render_csv,
}


def report_main(database_url: str, output_format: str = "text", since: date | None = None) -> str:
    """The `cds-service feedback-report` command: the report as text, JSON or CSV."""
    if output_format not in RENDERERS:
        raise ValueError(f"format must be one of {', '.join(RENDERERS)}")
    migrate(database_url)  # an empty or new database gives an empty report, not an error
    engine = create_database_engine(database_url)
    try:
        return RENDERERS[output_format](feedback_report(engine, since))
    finally:
        engine.dispose()
