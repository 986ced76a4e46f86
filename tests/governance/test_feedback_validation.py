"""Each rule of the CDS Hooks 2.0 feedback format, checked without a database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cds_service.governance.feedback import FeedbackError, parse_feedback

# The specification's own feedback examples, kept in the repository (tests/data/README.md).
SPEC_EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "cds-hooks" / "spec-2.0"
CARD = "4e0a3a1e-3283-4575-ab82-028d55fe2719"


def body(**item: Any) -> dict[str, Any]:
    base = {"card": CARD, "outcome": "overridden", "outcomeTimestamp": "2021-12-11T10:05:31Z"}
    return {"feedback": [{**base, **item}]}


def without(key: str) -> dict[str, Any]:
    payload = body()
    del payload["feedback"][0][key]
    return payload


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "JSON object"),
        ({}, "'feedback' must be a non-empty array"),
        ({"feedback": []}, "'feedback' must be a non-empty array"),
        ({"feedback": {"card": CARD}}, "'feedback' must be a non-empty array"),
        ({"feedback": ["x"]}, "feedback[0] must be an object"),
        (without("card"), "feedback[0].card"),
        (body(card=""), "feedback[0].card"),
        (body(card=7), "feedback[0].card"),
        (without("outcome"), "feedback[0].outcome must be one of accepted, overridden"),
        (body(outcome="ignored"), "feedback[0].outcome must be one of accepted, overridden"),
        (body(outcome="accepted"), "acceptedSuggestions is required when outcome is accepted"),
        (body(outcome="accepted", acceptedSuggestions=[]), "acceptedSuggestions must be"),
        (body(outcome="accepted", acceptedSuggestions=[{}]), "acceptedSuggestions must be"),
        (body(outcome="accepted", acceptedSuggestions=["e56e"]), "acceptedSuggestions must be"),
        (body(overrideReason="already addressed"), "overrideReason must be an object"),
        (body(overrideReason={}), "must have a reason, a userComment or both"),
        (body(overrideReason={"userComment": 3}), "userComment must be a string"),
        (body(overrideReason={"reason": "x"}), "reason must be a Coding"),
        (body(overrideReason={"reason": {"code": "x"}}), "'system' and 'code' strings"),
        (body(overrideReason={"reason": {"system": "s"}}), "'system' and 'code' strings"),
        (
            body(overrideReason={"reason": {"system": "s", "code": "c", "display": 1}}),
            "reason.display must be a string",
        ),
        (without("outcomeTimestamp"), "outcomeTimestamp must be an RFC 3339 date-time"),
        (body(outcomeTimestamp="2021-12-11"), "outcomeTimestamp must be an RFC 3339 date-time"),
        (body(outcomeTimestamp="2021-12-11T10:05:31"), "RFC 3339"),  # no offset: ambiguous
        (body(outcomeTimestamp="11/12/2021 10:05"), "RFC 3339"),
        (body(outcomeTimestamp=1639217131), "RFC 3339"),
        (body(outcomeTimestamp="2021-13-11T10:05:31Z"), "not a real date-time"),
    ],
)
def test_invalid_feedback_is_refused_with_the_rule_it_breaks(payload: Any, message: str) -> None:
    with pytest.raises(FeedbackError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_feedback(payload)


def test_error_names_the_item_that_is_wrong() -> None:
    payload = body()
    payload["feedback"].append({**payload["feedback"][0], "outcome": "maybe"})
    with pytest.raises(FeedbackError, match=r"feedback\[1\]\.outcome"):
        parse_feedback(payload)


@pytest.mark.parametrize(
    "name",
    [
        "feedback-accepted.json",
        "feedback-overridden-with-reason.json",
        "feedback-overridden-without-reason.json",
    ],
)
def test_spec_examples_are_valid(name: str) -> None:
    items = parse_feedback(json.loads((SPEC_EXAMPLES / name).read_text()))
    assert len(items) == 1


def test_values_are_parsed() -> None:
    [item] = parse_feedback(json.loads((SPEC_EXAMPLES / "feedback-accepted.json").read_text()))
    assert item.outcome == "accepted"
    assert item.accepted_suggestions == ("e56e1945-20b3-4393-8503-a1a20fd73152",)
    assert item.outcome_at == datetime(2021, 12, 11, 10, 5, 31, tzinfo=UTC)


def test_offset_timestamps_are_converted_to_utc() -> None:
    [item] = parse_feedback(body(outcomeTimestamp="2021-12-11T12:05:31.250+02:00"))
    assert item.outcome_at == datetime(2021, 12, 11, 10, 5, 31, 250000, tzinfo=UTC)


def test_comment_only_override_reason() -> None:
    [item] = parse_feedback(body(overrideReason={"userComment": "seen by haematology"}))
    assert item.override_reason is not None
    assert item.override_reason.code is None
    assert item.override_reason.user_comment == "seen by haematology"
