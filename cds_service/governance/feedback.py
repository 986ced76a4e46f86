"""The CDS Hooks 2.0 feedback body (§feedback), validated into plain values.

Every rule of the spec that a client can get wrong gives a message naming the item and field,
so an EHR integrator can fix the call from the 400 alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String

from cds_service.governance.models import CardFeedback


def _column_length(name: str) -> int:
    """The declared length of a String column of the feedback table."""
    column_type = CardFeedback.__table__.c[name].type
    if not isinstance(column_type, String) or column_type.length is None:
        raise TypeError(f"CardFeedback.{name} is not a String column with a length")
    return column_type.length


OUTCOMES = ("accepted", "overridden")
# Longest strings accepted, so that every accepted item fits its column (models.py) and a
# permanent client error is a 400 here, not a database failure answered 503 "retry".
MAX_CARD_UUID = _column_length("card_uuid")
MAX_SUGGESTION_ID = 200
MAX_REASON_SYSTEM = _column_length("reason_system")
MAX_REASON_CODE = _column_length("reason_code")
MAX_REASON_DISPLAY = _column_length("reason_display")
# Items per body: an EHR reports a few cards at a time; tens of thousands would exceed what one
# database statement may carry (PostgreSQL: 65,535 parameters) and fail as a 503 "retry".
MAX_ITEMS = 1000
# A free-text comment: a few paragraphs at most, never a document.
MAX_USER_COMMENT = 2000
# RFC 3339 §5.6 date-time: a full time with seconds and an explicit offset ("Z" or ±hh:mm).
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class FeedbackError(ValueError):
    """The body breaks a rule of the feedback format; the message says which."""


@dataclass(frozen=True)
class OverrideReason:
    system: str | None
    code: str | None
    display: str | None
    user_comment: str | None


@dataclass(frozen=True)
class Feedback:
    card_uuid: str
    outcome: str
    outcome_at: datetime
    accepted_suggestions: tuple[str, ...] | None
    override_reason: OverrideReason | None


def parse_feedback(body: Any) -> list[Feedback]:
    if not isinstance(body, Mapping):
        raise FeedbackError("the body must be a JSON object with a 'feedback' array")
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise FeedbackError("'feedback' must be a non-empty array")
    if len(items) > MAX_ITEMS:
        raise FeedbackError(f"'feedback' has more than {MAX_ITEMS} items; send them in parts")
    return [_parse_item(item, f"feedback[{index}]") for index, item in enumerate(items)]


def _parse_item(item: Any, where: str) -> Feedback:
    if not isinstance(item, Mapping):
        raise FeedbackError(f"{where} must be an object")
    card = item.get("card")
    if not isinstance(card, str) or not card:
        raise FeedbackError(f"{where}.card must be the card's uuid as a non-empty string")
    _check_text(card, f"{where}.card", MAX_CARD_UUID)
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        raise FeedbackError(f"{where}.outcome must be one of {', '.join(OUTCOMES)}")
    suggestions = _accepted_suggestions(item.get("acceptedSuggestions"), where)
    if outcome == "accepted" and suggestions is None:
        raise FeedbackError(f"{where}.acceptedSuggestions is required when outcome is accepted")
    return Feedback(
        card_uuid=card,
        outcome=outcome,
        outcome_at=_timestamp(item.get("outcomeTimestamp"), f"{where}.outcomeTimestamp"),
        accepted_suggestions=suggestions,
        override_reason=_override_reason(item.get("overrideReason"), f"{where}.overrideReason"),
    )


def _accepted_suggestions(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    message = f'{where}.acceptedSuggestions must be a non-empty array of {{"id": string}}'
    if not isinstance(value, list) or not value:
        raise FeedbackError(message)
    ids: list[str] = []
    for entry in value:
        id_ = entry.get("id") if isinstance(entry, Mapping) else None
        if not isinstance(id_, str) or not id_:
            raise FeedbackError(message)
        ids.append(id_)
    for index, id_ in enumerate(ids):
        _check_text(id_, f"{where}.acceptedSuggestions[{index}].id", MAX_SUGGESTION_ID)
    return tuple(ids)


def _override_reason(value: Any, where: str) -> OverrideReason | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise FeedbackError(f"{where} must be an object")
    reason, comment = value.get("reason"), value.get("userComment")
    if reason is None and comment is None:
        raise FeedbackError(f"{where} must have a reason, a userComment or both")
    if comment is not None and not isinstance(comment, str):
        raise FeedbackError(f"{where}.userComment must be a string")
    if comment is not None:
        _check_text(comment, f"{where}.userComment", MAX_USER_COMMENT)
    if reason is None:
        return OverrideReason(system=None, code=None, display=None, user_comment=comment)
    if not isinstance(reason, Mapping):
        raise FeedbackError(f"{where}.reason must be a Coding object")
    system, code, display = reason.get("system"), reason.get("code"), reason.get("display")
    if not (isinstance(system, str) and system and isinstance(code, str) and code):
        raise FeedbackError(f"{where}.reason must have 'system' and 'code' strings")
    if display is not None and not isinstance(display, str):
        raise FeedbackError(f"{where}.reason.display must be a string")
    _check_text(system, f"{where}.reason.system", MAX_REASON_SYSTEM)
    _check_text(code, f"{where}.reason.code", MAX_REASON_CODE)
    if display is not None:
        _check_text(display, f"{where}.reason.display", MAX_REASON_DISPLAY)
    return OverrideReason(system=system, code=code, display=display, user_comment=comment)


def _check_text(value: str, where: str, max_length: int) -> None:
    """A string the database can hold: not too long, no NUL (PostgreSQL text refuses it).
    Lone UTF-16 surrogates never get here: the JSON reader refuses them."""
    if len(value) > max_length:
        raise FeedbackError(f"{where} is longer than {max_length} characters")
    if "\x00" in value:
        raise FeedbackError(f"{where} must not contain a NUL character")


def _timestamp(value: Any, where: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise FeedbackError(
            f"{where} must be an RFC 3339 date-time with a time zone, e.g. 2021-12-11T10:05:31Z"
        )
    try:
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    # e.g. month 13, or 9999-12-31T23:59:59-01:00 (past year 9999 in UTC)
    except (ValueError, OverflowError) as error:
        raise FeedbackError(f"{where} is not a real date-time: {value}") from error
