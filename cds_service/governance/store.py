"""Card history, feedback and snoozes on one database, for the hook path and the endpoints.

Nothing here may fail a hook call: history is written in the background and a snooze look-up
that cannot reach the database, or does not answer within CDS_SNOOZE_LOOKUP_TIMEOUT_SECONDS,
shows every card (the safe direction).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, select

from cds_service.config import Settings
from cds_service.governance.counters import CARDS_SUPPRESSED, SNOOZE_CHECK_FAILURES, Counters
from cds_service.governance.feedback import Feedback
from cds_service.governance.models import CardFeedback, IssuedCard, utc_now
from cds_service.governance.outcomes import store_counted
from cds_service.governance.privacy import patient_key
from cds_service.governance.recorder import CallCount, CardHistoryWriter, Row

log = logging.getLogger(__name__)

Card = Mapping[str, Any]
SilentCard = tuple[str, str]  # (rule id, indicator) of a silent rule's finding
Clock = Callable[[], datetime]


def rule_id_of(card: Card) -> str | None:
    """The rule that produced a card, carried in `source.topic.code`."""
    topic = (card.get("source") or {}).get("topic") or {}
    code = topic.get("code")
    return code if isinstance(code, str) and code else None


# The snooze look-up runs on every hook call that has a non-critical card: built once, with
# parameters, because building the statement cost twice as much as running it.
SNOOZED_RULES = (
    select(IssuedCard.rule_id)
    .distinct()
    .join(CardFeedback, CardFeedback.card_uuid == IssuedCard.card_uuid)
    .where(
        IssuedCard.patient_key == bindparam("patient_key"),
        IssuedCard.service_id == bindparam("service_id"),
        IssuedCard.rule_id.in_(bindparam("rule_ids", expanding=True)),
        CardFeedback.outcome == "overridden",
        CardFeedback.reason_system == bindparam("reason_system"),
        CardFeedback.reason_code.in_(bindparam("reason_codes", expanding=True)),
        # Both clocks: a client clock running ahead cannot stretch the snooze.
        CardFeedback.outcome_at >= bindparam("since"),
        CardFeedback.received_at >= bindparam("since"),
    )
)


class Storage:
    def __init__(
        self,
        engine: Engine,
        config: Settings,
        clock: Clock = utc_now,
        snooze_engine: Engine | None = None,
    ) -> None:
        self.engine = engine
        # The snooze look-up's own engine, with CDS_SNOOZE_LOOKUP_TIMEOUT_SECONDS as its
        # statement, lock and pool time-outs (init_app makes it).
        self._snooze_engine = snooze_engine or engine
        self.counters = Counters()
        self._clock = clock
        self._secret = config.patient_key_secret
        self._snooze_system = config.snooze_reason_system
        self._snooze_codes = list(config.snooze_reason_codes)
        self._snooze_period = timedelta(days=config.snooze_days)
        self._writer = CardHistoryWriter(engine, self.counters, config.card_history_queue_size)

    def now(self) -> datetime:
        return self._clock()

    @property
    def snooze_system(self) -> str:
        return self._snooze_system

    @property
    def snooze_codes(self) -> tuple[str, ...]:
        return tuple(self._snooze_codes)

    def record_cards(
        self,
        service_id: str,
        hook: str,
        hook_instance: str,
        patient_id: str,
        cards: Iterable[Card],
        knowledge_version: str,
        *,
        silent: Iterable[SilentCard] = (),
        all_live: Sequence[str] | None = None,
        in_scope: bool | None = None,
    ) -> None:
        """Queue the cards of one hook response for the history; returns at once.
        `silent`: the (rule id, indicator) of the silent rules' findings, recorded as silent
        cards; `all_live`: the rule ids of the answer had every rule been live (None: every
        rule was); `in_scope`: whether the patient was in scope, counting the call in the
        day's denominators (None for cards that are not a hook call's, e.g. an import)."""
        try:
            key = patient_key(patient_id, self._secret)
            issued_at = self._clock()
            common = {
                "service_id": service_id,
                "hook": hook,
                "hook_instance": hook_instance,
                "knowledge_version": knowledge_version,
                "patient_key": key,
                "issued_at": issued_at,
                "all_live_answer": None if all_live is None else " ".join(all_live),
            }
            rows: list[Row] = []
            for card in cards:
                rule_id = rule_id_of(card)
                if not card.get("uuid") or rule_id is None:
                    # Feedback and snoozes need both; our card builder always sets them.
                    log.warning("card without uuid or source.topic.code not recorded")
                    continue
                rows.append(
                    {
                        **common,
                        "card_uuid": card["uuid"],
                        "rule_id": rule_id,
                        "indicator": card.get("indicator"),
                        "mode": "live",
                    }
                )
            for rule_id, indicator in silent:
                rows.append(
                    {
                        **common,
                        "card_uuid": str(uuid.uuid4()),
                        "rule_id": rule_id,
                        "indicator": indicator,
                        "mode": "silent",
                    }
                )
            if in_scope is not None:
                rows.append(CallCount(issued_at.date(), service_id, in_scope))
            self._writer.submit(rows)
        except Exception:  # history is secondary: the hook response must still go out
            log.exception("card history could not be queued")

    def snoozed_rules(
        self, service_id: str, patient_id: str, rule_ids: Collection[str]
    ) -> set[str]:
        """Of `rule_ids`, the rules snoozed for this patient by an "already addressed"
        override (the answer step's `Snoozed` port: it asks only for non-critical cards).
        A database that cannot answer snoozes nothing: a card too many is safe."""
        if not rule_ids or not self._snooze_codes:
            return set()
        try:
            return self._snoozed_rules(service_id, patient_id, set(rule_ids))
        except Exception as error:  # showing a card too many is safe; failing the call is not
            self.counters.increment(SNOOZE_CHECK_FAILURES)
            log.error("snooze look-up failed (%s): all cards shown", type(error).__name__)
            return set()

    def count_snoozed(self, service_id: str, rule_ids: Iterable[str]) -> None:
        """Count (and log, without the patient) the cards a snooze held back."""
        for rule_id in rule_ids:
            self.counters.increment(CARDS_SUPPRESSED)
            self.counters.increment(f"{CARDS_SUPPRESSED}.{rule_id}")
            log.info("card suppressed by snooze: service=%s rule=%s", service_id, rule_id)

    def _snoozed_rules(self, service_id: str, patient_id: str, rule_ids: set[str]) -> set[str]:
        parameters = {
            "patient_key": patient_key(patient_id, self._secret),
            "service_id": service_id,
            "rule_ids": sorted(rule_ids),
            "reason_system": self._snooze_system,
            "reason_codes": self._snooze_codes,
            "since": self._clock() - self._snooze_period,
        }
        with self._snooze_engine.connect() as connection:
            return set(connection.scalars(SNOOZED_RULES, parameters))

    def store_feedback(self, service_id: str, items: Sequence[Feedback]) -> None:
        """Store feedback; a repeat of the same card, outcome and time is stored once."""
        uuids = {item.card_uuid for item in items}
        with self.engine.connect() as connection:
            known = {
                card.card_uuid: card
                for card in connection.execute(
                    select(
                        IssuedCard.card_uuid,
                        IssuedCard.rule_id,
                        IssuedCard.indicator,
                        IssuedCard.issued_at,
                    ).where(IssuedCard.card_uuid.in_(uuids))
                )
            }
        received_at = self._clock()
        rows = [
            _feedback_row(service_id, item, known.get(item.card_uuid), received_at)
            for item in items
        ]
        unknown = sum(row["unknown_card"] for row in rows)
        if unknown:
            log.warning("feedback for %d card(s) this service has no record of", unknown)
        with self.engine.begin() as connection:
            store_counted(connection, rows)

    def flush(self) -> None:
        """Wait until queued card history is written (tests, shutdown)."""
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
        self.engine.dispose()
        self._snooze_engine.dispose()


def _feedback_row(
    service_id: str, item: Feedback, card: Any, received_at: datetime
) -> dict[str, Any]:
    """`card`: the card's (rule_id, indicator, issued_at) row, None when unknown."""
    reason = item.override_reason
    return {
        "rule_id": card.rule_id if card else None,
        "card_indicator": card.indicator if card else None,
        "card_issued_at": card.issued_at if card else None,
        "service_id": service_id,
        "card_uuid": item.card_uuid,
        "outcome": item.outcome,
        "outcome_at": item.outcome_at,
        "accepted_suggestions": list(item.accepted_suggestions or ()) or None,
        "reason_system": reason.system if reason else None,
        "reason_code": reason.code if reason else None,
        "reason_display": reason.display if reason else None,
        "user_comment": reason.user_comment if reason else None,
        "unknown_card": card is None,
        "received_at": received_at,
    }
