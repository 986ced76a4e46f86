"""The daily outcome counts (models.DailyOutcomes), kept as feedback is stored: each card
counts once, with its latest feedback in the order the service received it (as report.py
reads it), so a card overridden and then accepted moves from one count to the other.

Feedback for a card the service has no record of is stored but not counted. Two workers
storing feedback for the same card at the same instant could both move it; the history
(cds_card_feedback) stays exact, and `recount` rebuilds the counts from it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select

from cds_service.governance.database import add_to_counts, insert_ignoring_duplicates
from cds_service.governance.models import CardFeedback, DailyOutcomes

_KEYS = ("day", "service_id", "rule_id", "indicator", "outcome", "reason_system", "reason_code")
_LATEST_COLUMNS = (
    CardFeedback.id,
    CardFeedback.card_uuid,
    CardFeedback.service_id,
    CardFeedback.rule_id,
    CardFeedback.card_indicator,
    CardFeedback.card_issued_at,
    CardFeedback.outcome,
    CardFeedback.reason_system,
    CardFeedback.reason_code,
)


def store_counted(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert feedback rows (a repeat is stored once) and move their cards' counts."""
    cards = {row["card_uuid"] for row in rows if row["rule_id"] is not None}
    before = _latest(connection, cards)
    insert_ignoring_duplicates(connection, CardFeedback, rows)
    after = _latest(connection, cards)
    moves: Counter[tuple[Any, ...]] = Counter()
    for card, latest in after.items():
        previous = before.get(card)
        if previous is not None and previous.id == latest.id:
            continue  # a repeat: nothing moved
        if previous is not None:
            moves[_bucket(previous)] -= 1
        moves[_bucket(latest)] += 1
    _add(connection, moves)


def recount(connection: Connection) -> None:
    """Rebuild the counts from the feedback history (the benchmark's seeding; migration 0003
    fills them the same way in SQL)."""
    connection.execute(delete(DailyOutcomes))
    ranked = select(
        *_LATEST_COLUMNS,
        func.row_number()
        .over(
            partition_by=CardFeedback.card_uuid,
            order_by=(CardFeedback.received_at.desc(), CardFeedback.id.desc()),
        )
        .label("rank"),
    ).where(CardFeedback.rule_id.is_not(None))
    latest = ranked.subquery()
    rows = connection.execute(select(latest).where(latest.c.rank == 1)).all()
    _add(connection, Counter(_bucket(row) for row in rows))


def _latest(connection: Connection, cards: Collection[str]) -> dict[str, Any]:
    if not cards:
        return {}
    rows = connection.execute(
        select(*_LATEST_COLUMNS)
        .where(CardFeedback.card_uuid.in_(cards))
        .order_by(CardFeedback.received_at, CardFeedback.id)
    )
    return {row.card_uuid: row for row in rows}  # the last one per card is its latest


def _bucket(row: Row[Any]) -> tuple[Any, ...]:
    return (
        row.card_issued_at.date(),
        row.service_id,
        row.rule_id,
        row.card_indicator,
        row.outcome,
        row.reason_system or "",
        row.reason_code or "",
    )


def _add(connection: Connection, moves: Counter[tuple[Any, ...]]) -> None:
    counts = [{**dict(zip(_KEYS, key, strict=True)), "cards": n} for key, n in moves.items() if n]
    add_to_counts(connection, DailyOutcomes, counts, ("cards",))
