"""snoozed_rules (the answer step's snooze port): an "already addressed" override quiets the
same rule for the same patient for SNOOZE_DAYS; a database outage snoozes nothing. (Critical
cards are never asked about: tests/rules/test_answer.py.)"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from cds_service.governance import Storage, init_app
from cds_service.governance.counters import CARDS_SUPPRESSED, SNOOZE_CHECK_FAILURES

from .conftest import (
    SERVICE_ID,
    UNREACHABLE_DATABASE_URL,
    Clock,
    feedback_item,
    governed_app,
    make_card,
    make_config,
    storage_of,
)

URL = f"/cds-services/{SERVICE_ID}/feedback"
PATIENT = "Patient/sle-mmf-7"


def show_and_override(
    app: Flask,
    rule_id: str,
    code: str | None,
    clock: Clock,
    patient: str = PATIENT,
    indicator: str = "warning",
    service_id: str = SERVICE_ID,
) -> None:
    storage: Storage = storage_of(app)
    card = make_card(rule_id, indicator)
    storage.record_cards(service_id, "patient-view", "h", patient, [card], "v")
    storage.flush()
    item = feedback_item(
        card["uuid"], code=code, timestamp=clock.now.isoformat().replace("+00:00", "Z")
    )
    response = app.test_client().post(URL, json={"feedback": [item]})
    assert response.status_code == 200


def snoozed(
    storage: Storage, *rule_ids: str, service_id: str = SERVICE_ID, patient: str = PATIENT
) -> set[str]:
    return storage.snoozed_rules(service_id, patient, frozenset(rule_ids))


def test_already_addressed_snoozes_the_rule_for_that_patient(
    app: Flask, storage: Storage, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    show_and_override(app, "LEUKOPENIA_MONITOR", "already-addressed", clock)
    clock.advance(days=1)
    with caplog.at_level(logging.INFO):
        held = snoozed(storage, "LEUKOPENIA_MONITOR", "CBC_STALE")
        storage.count_snoozed(SERVICE_ID, held)
    assert held == {"LEUKOPENIA_MONITOR"}
    counts = storage.counters.snapshot()
    assert counts[CARDS_SUPPRESSED] == 1
    assert counts[f"{CARDS_SUPPRESSED}.LEUKOPENIA_MONITOR"] == 1
    assert "rule=LEUKOPENIA_MONITOR" in caplog.text
    assert PATIENT not in caplog.text


def test_snooze_expires_after_snooze_days(app: Flask, storage: Storage, clock: Clock) -> None:
    show_and_override(app, "LEUKOPENIA_MONITOR", "counts-reviewed", clock)
    clock.advance(days=7)
    assert snoozed(storage, "LEUKOPENIA_MONITOR") == {"LEUKOPENIA_MONITOR"}
    clock.advance(seconds=1)
    assert snoozed(storage, "LEUKOPENIA_MONITOR") == set()


@pytest.mark.parametrize("code", [None, "benefit-outweighs-risk"])
def test_other_overrides_do_not_snooze(
    app: Flask, storage: Storage, clock: Clock, code: str | None
) -> None:
    show_and_override(app, "LEUKOPENIA_MONITOR", code, clock)
    assert snoozed(storage, "LEUKOPENIA_MONITOR") == set()


def test_snooze_is_per_patient_service_and_rule(app: Flask, storage: Storage, clock: Clock) -> None:
    show_and_override(app, "LEUKOPENIA_MONITOR", "already-addressed", clock)
    assert snoozed(storage, "LEUKOPENIA_MONITOR", patient="Patient/other") == set()
    assert snoozed(storage, "LEUKOPENIA_MONITOR", service_id="leukopenia-order-sign") == set()
    assert snoozed(storage, "CBC_STALE") == set()


def test_accepted_feedback_does_not_snooze(app: Flask, storage: Storage, clock: Clock) -> None:
    card = make_card("LEUKOPENIA_MONITOR")
    storage.record_cards(SERVICE_ID, "patient-view", "h", PATIENT, [card], "v")
    storage.flush()
    item = feedback_item(card["uuid"], outcome="accepted", code="already-addressed")
    assert app.test_client().post(URL, json={"feedback": [item]}).status_code == 200
    assert snoozed(storage, "LEUKOPENIA_MONITOR") == set()


def test_snooze_codes_and_days_are_settings(database_url: str, clock: Clock) -> None:
    app = governed_app(
        make_config(database_url, SNOOZE_REASON_CODES=["duffy-null"], SNOOZE_DAYS=30), clock
    )
    storage = storage_of(app)
    try:
        show_and_override(app, "NEUTROPENIA_MODERATE", "duffy-null", clock)
        show_and_override(app, "LEUKOPENIA_MONITOR", "already-addressed", clock)
        clock.advance(days=20)
        held = snoozed(storage, "NEUTROPENIA_MODERATE", "LEUKOPENIA_MONITOR")
        assert held == {"NEUTROPENIA_MODERATE"}
    finally:
        storage.close()


def test_a_client_clock_in_the_future_cannot_stretch_the_snooze(
    app: Flask, storage: Storage, clock: Clock
) -> None:
    real_now = clock.now
    clock.advance(days=30)  # the EHR's clock runs a month ahead
    card = make_card("LEUKOPENIA_MONITOR")
    storage.record_cards(SERVICE_ID, "patient-view", "h", PATIENT, [card], "v")
    storage.flush()
    item = feedback_item(
        card["uuid"],
        code="already-addressed",
        timestamp=clock.now.isoformat().replace("+00:00", "Z"),
    )
    clock.now = real_now
    assert app.test_client().post(URL, json={"feedback": [item]}).status_code == 200
    clock.advance(days=8)
    assert snoozed(storage, "LEUKOPENIA_MONITOR") == set()


def test_database_down_shows_every_card() -> None:
    app = Flask(__name__)
    storage = init_app(app, make_config(UNREACHABLE_DATABASE_URL), {SERVICE_ID})
    try:
        assert snoozed(storage, "LEUKOPENIA_MONITOR") == set()
        assert storage.counters.snapshot()[SNOOZE_CHECK_FAILURES] == 1
    finally:
        storage.close()


def test_no_rule_asked_needs_no_look_up(storage: Storage) -> None:
    storage.engine.dispose()
    assert snoozed(storage) == set()
    assert SNOOZE_CHECK_FAILURES not in storage.counters.snapshot()


def _lookup_steps(storage: Storage) -> int:
    """SQLite's progress-handler count for one snooze look-up: a measure of the rows it visits
    that, unlike time, does not depend on the machine."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    def on_checkout(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.set_progress_handler(count, 1)

    event.listen(storage.engine, "checkout", on_checkout)
    try:
        held = snoozed(storage, "LEUKOPENIA_MONITOR")
    finally:
        event.remove(storage.engine, "checkout", on_checkout)
    assert held == {"LEUKOPENIA_MONITOR"}
    return steps[0]


def test_the_snooze_look_up_does_not_grow_with_the_patients_card_history(
    tmp_path: Any, clock: Clock
) -> None:
    # Every opening of a chart adds cards to its history; the look-up runs on every hook call.
    app = governed_app(make_config(f"sqlite:///{tmp_path}/cds.sqlite3"), clock)
    storage = storage_of(app)
    try:
        show_and_override(app, "LEUKOPENIA_MONITOR", "already-addressed", clock)
        short_history = _lookup_steps(storage)
        for _ in range(20):
            cards = [make_card(rule) for rule in ("LEUKOPENIA_MONITOR", "CBC_STALE")] * 100
            storage.record_cards(SERVICE_ID, "patient-view", "h", PATIENT, cards, "v")
        storage.flush()
        long_history = _lookup_steps(storage)
    finally:
        storage.close()
    # 4,000 more cards for this patient (read one by one, the count grew 45 -> 298).
    assert long_history <= 2 * short_history + 5
