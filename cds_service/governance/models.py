"""Tables: the cards the service showed and the feedback clinicians gave on them.

Feedback is joined to cards by the card uuid only (no foreign key): feedback may name a card
this database never saw, and it is kept (flagged) rather than refused.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (SQLite has no time zones), always read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class IssuedCard(Base):
    """One card returned by a hook call."""

    __tablename__ = "cds_issued_card"

    card_uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(200))
    hook: Mapped[str] = mapped_column(String(100))
    hook_instance: Mapped[str] = mapped_column(String(100))
    rule_id: Mapped[str] = mapped_column(String(100))
    knowledge_version: Mapped[str] = mapped_column(String(100))
    indicator: Mapped[str] = mapped_column(String(16))
    # HMAC of the patient id (cds_service.governance.privacy.patient_key), never the id itself.
    patient_key: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # "live" (returned) or "silent" (CDS_RULE_MODES: recorded, never returned); rows written
    # before migration 0003 are live.
    mode: Mapped[str] = mapped_column(String(8), server_default="live")
    # When a rule was silent: the rule ids, space-separated, of the answer had every rule been
    # live (empty: no card); NULL when every rule was live (the answer was that).
    all_live_answer: Mapped[str | None] = mapped_column(String(2000))

    __table_args__ = (
        Index("ix_cds_issued_card_patient_rule", "patient_key", "rule_id"),
        # Distinct patients per rule over a date range (the console): read from this index
        # alone, in the order the count needs (rule, mode, patient), so neither SQLite nor
        # PostgreSQL sorts the cards (benchmarks/governance.py).
        Index(
            "ix_cds_issued_card_governance",
            "rule_id",
            "mode",
            "patient_key",
            "issued_at",
            "service_id",
        ),
    )


class DailyCalls(Base):
    """Hook calls per service and UTC day, and those whose patient was in scope: the
    denominators of the governance console. Counts only, nothing about a patient."""

    __tablename__ = "cds_daily_calls"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    service_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger)
    in_scope_calls: Mapped[int] = mapped_column(BigInteger)


class DailyCards(Base):
    """Cards per UTC day, service, rule, mode and knowledge version, kept as cards are
    recorded, so the console's counts and weekly trends never scan the card history."""

    __tablename__ = "cds_daily_cards"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    service_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    mode: Mapped[str] = mapped_column(String(8), primary_key=True)
    knowledge_version: Mapped[str] = mapped_column(String(100), primary_key=True)
    cards: Mapped[int] = mapped_column(BigInteger)


class DailyOutcomes(Base):
    """Cards by their latest feedback, per UTC day the card was issued, service (the one the
    feedback was sent to), rule, card indicator, outcome and reason (empty when none), kept as
    feedback is stored: a card whose outcome changes moves from one count to the other."""

    __tablename__ = "cds_daily_outcomes"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    service_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    indicator: Mapped[str] = mapped_column(String(16), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason_system: Mapped[str] = mapped_column(String(500), primary_key=True)
    reason_code: Mapped[str] = mapped_column(String(200), primary_key=True)
    cards: Mapped[int] = mapped_column(BigInteger)


class CardFeedback(Base):
    """One feedback item; the same card, outcome and timestamp is stored once."""

    __tablename__ = "cds_card_feedback"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    service_id: Mapped[str] = mapped_column(String(200))
    card_uuid: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    outcome_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_suggestions: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    reason_system: Mapped[str | None] = mapped_column(String(500))
    reason_code: Mapped[str | None] = mapped_column(String(200))
    reason_display: Mapped[str | None] = mapped_column(String(500))
    user_comment: Mapped[str | None] = mapped_column(Text)
    # True when no card with this uuid was in the history when the feedback arrived.
    unknown_card: Mapped[bool]
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The card's rule, indicator and issue time, copied when the feedback is stored (NULL for
    # an unknown card), so the console counts outcomes without joining the card history.
    rule_id: Mapped[str | None] = mapped_column(String(100))
    card_indicator: Mapped[str | None] = mapped_column(String(16))
    card_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    __table_args__ = (
        UniqueConstraint("card_uuid", "outcome", "outcome_at", name="uq_cds_card_feedback_once"),
        # The snooze look-up (every hook call with a non-critical card) starts from the few
        # snoozing overrides, not from the patient's card history: without it SQLite read every
        # card ever issued for the patient (54 ms a call at 60,000 cards, growing with each
        # chart opening; 0.2 ms with it).
        Index(
            "ix_cds_card_feedback_snooze", "outcome", "reason_system", "reason_code", "outcome_at"
        ),
    )


def utc_now() -> datetime:
    return datetime.now(UTC)
