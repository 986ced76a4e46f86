"""POST /cds-services/<id>/feedback through Flask, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from cds_service.governance import Storage, init_app
from cds_service.governance.database import create_database_engine
from cds_service.governance.models import CardFeedback

from .conftest import SERVICE_ID, UNREACHABLE_DATABASE_URL, feedback_item, make_card, make_config
from .test_feedback_validation import SPEC_EXAMPLES

URL = f"/cds-services/{SERVICE_ID}/feedback"


def stored(storage: Storage) -> list[CardFeedback]:
    with storage.engine.connect() as connection:
        return list(connection.execute(select(CardFeedback).order_by(CardFeedback.id)))


def issue(storage: Storage, *cards: dict[str, Any], patient: str = "Patient/123") -> None:
    storage.record_cards(SERVICE_ID, "patient-view", "hook-1", patient, list(cards), "2025.1")
    storage.flush()


@pytest.mark.parametrize(
    "name",
    [
        "feedback-accepted.json",
        "feedback-overridden-with-reason.json",
        "feedback-overridden-without-reason.json",
    ],
)
def test_spec_example_bodies_are_stored(app: Flask, storage: Storage, name: str) -> None:
    response = app.test_client().post(
        URL, data=(SPEC_EXAMPLES / name).read_text(), content_type="application/json"
    )
    assert response.status_code == 200
    assert response.get_json() == {}
    [row] = stored(storage)
    assert row.card_uuid == json.loads((SPEC_EXAMPLES / name).read_text())["feedback"][0]["card"]


def test_round_trip_keeps_every_field(app: Flask, storage: Storage) -> None:
    card = make_card("NEUTROPENIA_MODERATE")
    issue(storage, card)
    item = feedback_item(card["uuid"], code="already-addressed")
    item["overrideReason"]["userComment"] = "Repeat CBC booked"
    response = app.test_client().post(URL, json={"feedback": [item]})
    assert response.status_code == 200
    [row] = stored(storage)
    assert (
        row.service_id,
        row.outcome,
        row.reason_code,
        row.reason_display,
        row.user_comment,
        row.unknown_card,
    ) == (
        SERVICE_ID,
        "overridden",
        "already-addressed",
        "Already addressed",
        "Repeat CBC booked",
        False,
    )
    assert row.outcome_at.isoformat() == "2025-03-03T09:00:00+00:00"


def test_accepted_suggestions_are_stored(app: Flask, storage: Storage) -> None:
    item = feedback_item("c-1", outcome="accepted")
    assert app.test_client().post(URL, json={"feedback": [item]}).status_code == 200
    assert stored(storage)[0].accepted_suggestions == [item["acceptedSuggestions"][0]["id"]]


def test_feedback_for_a_card_never_issued_is_kept_and_flagged(app: Flask, storage: Storage) -> None:
    response = app.test_client().post(URL, json={"feedback": [feedback_item("never-issued")]})
    assert response.status_code == 200
    [row] = stored(storage)
    assert row.unknown_card is True


def test_duplicate_feedback_is_stored_once(app: Flask, storage: Storage) -> None:
    client = app.test_client()
    item = feedback_item("card-1")
    for _ in range(3):
        assert client.post(URL, json={"feedback": [item, item]}).status_code == 200
    later = feedback_item("card-1", timestamp="2025-03-03T10:00:00Z")
    assert client.post(URL, json={"feedback": [later]}).status_code == 200
    assert len(stored(storage)) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not json", "the request body is not valid JSON"),
        (json.dumps({"feedback": []}), "'feedback' must be a non-empty array"),
        (
            json.dumps(
                {
                    "feedback": [
                        {
                            "card": "x",
                            "outcome": "accepted",
                            "outcomeTimestamp": "2025-03-03T09:00:00Z",
                        }
                    ]
                }
            ),
            "acceptedSuggestions is required",
        ),
        (json.dumps({"feedback": [{"card": "x", "outcome": "overridden"}]}), "outcomeTimestamp"),
    ],
)
def test_bad_bodies_get_400_with_the_reason(
    app: Flask, storage: Storage, data: str, message: str
) -> None:
    response = app.test_client().post(URL, data=data, content_type="application/json")
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert stored(storage) == []


def test_one_bad_item_stores_nothing(app: Flask, storage: Storage) -> None:
    body = {"feedback": [feedback_item("ok"), {**feedback_item("bad"), "outcome": "meh"}]}
    assert app.test_client().post(URL, json=body).status_code == 400
    assert stored(storage) == []


def test_unknown_service_gets_404(app: Flask, storage: Storage) -> None:
    response = app.test_client().post(
        "/cds-services/no-such-service/feedback", json={"feedback": [feedback_item("x")]}
    )
    assert response.status_code == 404
    assert "no-such-service" in response.get_json()["error"]


def test_service_ids_may_be_a_callable(tmp_path: Any) -> None:
    ids: set[str] = set()
    app = Flask(__name__)
    storage = init_app(app, make_config(f"sqlite:///{tmp_path}/c.sqlite3"), lambda: ids)
    try:
        client = app.test_client()
        body = {"feedback": [feedback_item("x")]}
        assert client.post(URL, json=body).status_code == 404
        ids.add(SERVICE_ID)  # services loaded later are seen at once
        assert client.post(URL, json=body).status_code == 200
    finally:
        storage.close()


def test_concurrent_posts_lose_nothing(app: Flask, storage: Storage) -> None:
    start = threading.Barrier(20)
    statuses: list[int] = []

    def post(index: int) -> None:
        client = app.test_client()
        start.wait()
        body = {
            "feedback": [
                feedback_item(f"card-{index}", code="counts-reviewed"),
                feedback_item("shared-card"),
            ]
        }  # the same item from every thread
        statuses.append(client.post(URL, json=body).status_code)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 20
    assert sorted(row.card_uuid for row in stored(storage)) == sorted(
        [f"card-{i}" for i in range(20)] + ["shared-card"]
    )


def test_database_down_gives_503_not_500() -> None:
    app = Flask(__name__)
    storage = init_app(app, make_config(UNREACHABLE_DATABASE_URL), {SERVICE_ID})
    try:
        response = app.test_client().post(URL, json={"feedback": [feedback_item("x")]})
        assert response.status_code == 503
        assert "retry" in response.get_json()["error"]
    finally:
        storage.close()


def test_sqlite_commits_are_durable(tmp_path):
    """A feedback item answered with 200 must survive a power cut: WAL with synchronous=FULL."""
    engine = create_database_engine(f"sqlite:///{tmp_path}/cds.sqlite3")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()


# --- Permanent client errors are 400s naming the field, never 503 "retry" or 500 (issue 13) ---


def _with_reason(**reason: Any) -> dict[str, Any]:
    item = feedback_item("card-1", code="already-addressed")
    item["overrideReason"]["reason"] |= reason
    return item


def _field_cases(text: str) -> dict[str, dict[str, Any]]:
    """Feedback items with `text` in each string field the service stores."""
    commented = feedback_item("card-1", code="already-addressed")
    commented["overrideReason"]["userComment"] = text
    accepted = feedback_item("card-1", outcome="accepted")
    accepted["acceptedSuggestions"] = [{"id": text}]
    return {
        "feedback[0].card": feedback_item(text),
        "feedback[0].overrideReason.reason.system": _with_reason(system=text),
        "feedback[0].overrideReason.reason.code": _with_reason(code=text),
        "feedback[0].overrideReason.reason.display": _with_reason(display=text),
        "feedback[0].overrideReason.userComment": commented,
        "feedback[0].acceptedSuggestions[0].id": accepted,
    }


LONGEST = {
    "feedback[0].card": 64,
    "feedback[0].overrideReason.reason.system": 500,
    "feedback[0].overrideReason.reason.code": 200,
    "feedback[0].overrideReason.reason.display": 500,
    "feedback[0].overrideReason.userComment": 2000,
    "feedback[0].acceptedSuggestions[0].id": 200,
}


@pytest.mark.parametrize("field", LONGEST)
def test_a_nul_character_is_a_400_naming_the_field(
    app: Flask, storage: Storage, field: str
) -> None:
    item = _field_cases("a\x00b")[field]
    response = app.test_client().post(URL, json={"feedback": [item]})
    assert response.status_code == 400
    assert response.get_json()["error"] == f"{field} must not contain a NUL character"
    assert stored(storage) == []


@pytest.mark.parametrize(("field", "longest"), LONGEST.items())
def test_longest_strings_are_stored_and_one_more_is_a_400(
    app: Flask, storage: Storage, field: str, longest: int
) -> None:
    client = app.test_client()
    too_long = client.post(URL, json={"feedback": [_field_cases("x" * (longest + 1))[field]]})
    assert too_long.status_code == 400
    assert too_long.get_json()["error"] == f"{field} is longer than {longest} characters"
    assert stored(storage) == []
    # Non-ASCII at the edge: the limits count characters, as the columns do.
    fits = client.post(URL, json={"feedback": [_field_cases("é" * longest)[field]]})
    assert fits.status_code == 200
    assert len(stored(storage)) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b'{"feedback": [{"card": "\\ud800", "outcome": "overridden"}]}',
        b'{"feedback": [{"card": "x\\udc00", "outcome": "overridden"}]}',
        b'{"feedback": "\xed\xa0\x80"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"feedback": ' + b"[" * 100 + b"]" * 100 + b"}",
    ],
    ids=["lone high surrogate", "lone low surrogate", "encoded surrogate", "deep", "deep item"],
)
def test_surrogates_and_deep_nesting_are_400s(app: Flask, storage: Storage, raw: bytes) -> None:
    response = app.test_client().post(URL, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.is_json
    assert stored(storage) == []


@pytest.mark.parametrize(
    "timestamp",
    ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2025-03-03T09:00:00Z\n"],
)
def test_timestamps_out_of_range_are_400s(app: Flask, storage: Storage, timestamp: str) -> None:
    item = feedback_item("card-1", timestamp=timestamp)
    response = app.test_client().post(URL, json={"feedback": [item]})
    assert response.status_code == 400
    assert "outcomeTimestamp" in response.get_json()["error"]


def test_too_many_items_is_a_400_not_a_503(app: Flask, storage: Storage) -> None:
    client = app.test_client()
    items = [feedback_item(f"card-{n}", code="already-addressed") for n in range(1001)]
    response = client.post(URL, json={"feedback": items})
    assert response.status_code == 400
    assert response.get_json()["error"] == "'feedback' has more than 1000 items; send them in parts"
    assert client.post(URL, json={"feedback": items[:1000]}).status_code == 200
    assert len(stored(storage)) == 1000


def test_a_body_of_a_million_values_is_a_413(app: Flask, storage: Storage) -> None:
    raw = b'{"feedback": [' + b",".join([b"0"] * 1_000_000) + b"]}"
    response = app.test_client().post(URL, data=raw, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json() == {"error": "the request body holds more than 500000 JSON values"}
    assert stored(storage) == []
