"""record_cards: every card kept with a patient key, off the request path, never failing."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from cds_service.config import Settings
from cds_service.governance import Storage, init_app
from cds_service.governance.counters import CARDS_LOST, CARDS_RECORDED, Counters
from cds_service.governance.models import DailyCalls, DailyCards, IssuedCard
from cds_service.governance.privacy import patient_key
from cds_service.governance.recorder import CardHistoryWriter

from .conftest import SERVICE_ID, UNREACHABLE_DATABASE_URL, make_card, make_config

PATIENT = "Patient/sle-azathioprine-42"


def history(storage: Storage) -> list[IssuedCard]:
    with storage.engine.connect() as connection:
        return list(connection.execute(select(IssuedCard).order_by(IssuedCard.rule_id)))


def test_every_card_is_recorded_with_its_rule_and_a_patient_key(
    storage: Storage, config: Settings
) -> None:
    cards = [make_card("NEUTROPENIA_SEVERE", "critical"), make_card("CBC_STALE", "info")]
    storage.record_cards(
        SERVICE_ID, "patient-view", "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", PATIENT, cards, "2025.1"
    )
    storage.flush()
    rows = history(storage)
    assert [(r.rule_id, r.indicator, r.card_uuid) for r in rows] == [
        ("CBC_STALE", "info", cards[1]["uuid"]),
        ("NEUTROPENIA_SEVERE", "critical", cards[0]["uuid"]),
    ]
    row = rows[0]
    assert (row.service_id, row.hook, row.hook_instance, row.knowledge_version) == (
        SERVICE_ID,
        "patient-view",
        "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "2025.1",
    )
    assert row.patient_key == patient_key(PATIENT, config.patient_key_secret)
    assert row.issued_at == storage.now()
    assert storage.counters.snapshot()[CARDS_RECORDED] == 2


def test_patient_id_is_nowhere_in_the_database(tmp_path: Path) -> None:
    app = Flask(__name__)
    database = tmp_path / "cds.sqlite3"
    storage = init_app(app, make_config(f"sqlite:///{database}"), {SERVICE_ID})
    storage.record_cards(SERVICE_ID, "patient-view", "h", PATIENT, [make_card("X")], "v")
    storage.flush()
    storage.close()
    assert storage.counters.snapshot()[CARDS_RECORDED] == 1
    files = [database, *tmp_path.glob("cds.sqlite3-*")]  # WAL files too
    assert not any(PATIENT.encode() in path.read_bytes() for path in files)


def test_cards_without_uuid_or_rule_are_skipped(storage: Storage) -> None:
    no_uuid = make_card("A")
    del no_uuid["uuid"]
    no_topic = make_card("B")
    del no_topic["source"]["topic"]
    storage.record_cards(
        SERVICE_ID, "patient-view", "h", PATIENT, [no_uuid, no_topic, make_card("C")], "v"
    )
    storage.flush()
    assert [r.rule_id for r in history(storage)] == ["C"]


def test_recording_the_same_card_twice_keeps_one_row(storage: Storage) -> None:
    card = make_card("A")
    for _ in range(2):
        storage.record_cards(SERVICE_ID, "patient-view", "h", PATIENT, [card], "v")
    storage.flush()
    assert len(history(storage)) == 1
    with storage.engine.connect() as connection:
        daily = connection.execute(select(DailyCards.rule_id, DailyCards.cards)).all()
    assert daily == [("A", 1)]  # the daily count is of cards recorded, not of attempts


def test_every_call_is_counted_for_its_day_with_its_scope(storage: Storage) -> None:
    """The denominators: one count per hook call, whether or not it had cards."""
    storage.record_cards(SERVICE_ID, "patient-view", "h1", PATIENT, [], "v", in_scope=True)
    storage.record_cards(SERVICE_ID, "patient-view", "h2", "Patient/9", [], "v", in_scope=False)
    storage.record_cards(SERVICE_ID, "patient-view", "h3", PATIENT, [make_card("A")], "v")
    storage.flush()
    with storage.engine.connect() as connection:
        calls = connection.execute(
            select(DailyCalls.service_id, DailyCalls.calls, DailyCalls.in_scope_calls)
        ).all()
    assert calls == [(SERVICE_ID, 2, 1)]  # the third is no call (in_scope not given)


def test_database_down_does_not_raise_and_counts_the_loss(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Flask(__name__)
    storage = init_app(app, make_config(UNREACHABLE_DATABASE_URL), {SERVICE_ID})
    try:
        with caplog.at_level(logging.INFO):
            storage.record_cards(
                SERVICE_ID, "patient-view", "h", PATIENT, [make_card("A"), make_card("B")], "v"
            )
            storage.flush()
        assert storage.counters.snapshot()[CARDS_LOST] == 2
        assert "2 card records lost" in caplog.text
        assert PATIENT not in caplog.text
    finally:
        storage.close()


class BlockedEngine:
    """An engine whose writes wait until the test lets them go, then fail."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def begin(self) -> Any:
        self.entered.set()
        self.release.wait()
        raise ConnectionError("database gone")


def test_full_queue_drops_and_counts_instead_of_blocking() -> None:
    engine = BlockedEngine()
    counters = Counters()
    writer = CardHistoryWriter(engine, counters, max_queued=2)  # type: ignore[arg-type]
    writer.submit([{"card_uuid": "first"}])
    engine.entered.wait()  # the writer holds "first" and is stuck in the database
    writer.submit([{"card_uuid": str(i)} for i in range(5)])  # 2 fit, 3 do not
    assert counters.snapshot()[CARDS_LOST] == 3
    engine.release.set()
    writer.flush()
    writer.close()
    assert counters.snapshot()[CARDS_LOST] == 6  # and the 3 written ones failed


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    app = Flask(__name__)
    url = f"sqlite:///{tmp_path}/cds.sqlite3"
    storage = init_app(app, make_config(url), {SERVICE_ID})
    storage.record_cards(
        SERVICE_ID, "patient-view", "h", PATIENT, [make_card(f"R{i}") for i in range(50)], "v"
    )
    storage.close()
    assert storage.counters.snapshot()[CARDS_RECORDED] == 50


def test_patient_key_is_stable_secret_dependent_and_hides_the_id() -> None:
    key = patient_key(PATIENT, "secret-a")
    assert key == patient_key(PATIENT, "secret-a")
    assert key != patient_key(PATIENT, "secret-b")
    assert key != patient_key("Patient/other", "secret-a")
    assert len(key) == 64 and "sle" not in key


# --- A bad row loses only itself (issue 13 §3: 402 of 800 cards lost on PostgreSQL) --------


def _row(card: dict[str, Any], hook_instance: str = "h") -> dict[str, Any]:
    return {
        "card_uuid": card["uuid"],
        "service_id": SERVICE_ID,
        "hook": "patient-view",
        "hook_instance": hook_instance,
        "rule_id": card["source"]["topic"]["code"],
        "knowledge_version": "v",
        "indicator": card.get("indicator"),
        "patient_key": "k",
        "issued_at": __import__("datetime").datetime.now(__import__("datetime").UTC),
    }


def test_a_failing_batch_is_written_row_by_row(storage: Storage) -> None:
    counters = Counters()
    writer = CardHistoryWriter(storage.engine, counters, 100)
    good = [make_card(f"GOOD_{n}") for n in range(5)]
    bad = make_card("BAD")
    del bad["indicator"]  # NOT NULL on every database
    rows = [_row(card) for card in good[:2]] + [_row(bad)] + [_row(card) for card in good[2:]]
    writer._write(rows)  # one batch, as the writer thread forms them
    writer.close()
    assert [r.rule_id for r in history(storage)] == [f"GOOD_{n}" for n in range(5)]
    assert counters.snapshot()[CARDS_RECORDED] == 5
    assert counters.snapshot()[CARDS_LOST] == 1


def test_the_longest_accepted_hook_instance_fits_its_column(storage: Storage) -> None:
    from cds_service.protocol.request import MAX_HOOK_INSTANCE_LENGTH

    assert IssuedCard.__table__.c.hook_instance.type.length == MAX_HOOK_INSTANCE_LENGTH
    longest = "é" * MAX_HOOK_INSTANCE_LENGTH  # characters, not bytes, on PostgreSQL too
    storage.record_cards(SERVICE_ID, "patient-view", longest, PATIENT, [make_card("A")], "v")
    storage.flush()
    assert [r.hook_instance for r in history(storage)] == [longest]
    assert storage.counters.snapshot().get(CARDS_LOST, 0) == 0
