"""Issue 24: a hung database (here: a lock held on the feedback table) must not hold every hook
call for CDS_DATABASE_TIMEOUT_SECONDS. The snooze look-up gives up after
CDS_SNOOZE_LOOKUP_TIMEOUT_SECONDS; the call then shows every card and the failure is counted."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from flask import Flask
from sqlalchemy import make_url, text

from cds_service.governance import Storage
from cds_service.governance.counters import SNOOZE_CHECK_FAILURES

from .conftest import SERVICE_ID, Clock, governed_app, make_config, storage_of
from .test_snooze import PATIENT, show_and_override

# Longer than the look-up's time-out, shorter than the database time-out of this test: the old
# code waited for the lock and then suppressed the card.
LOCK_SECONDS = 3.0


@pytest.fixture
def locked_app(database_url: str, clock: Clock) -> Iterator[Flask]:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite in WAL mode lets readers through any lock")
    config = make_config(database_url, DATABASE_TIMEOUT_SECONDS=30)
    assert config.snooze_lookup_timeout_seconds == 0.25  # the default
    app = governed_app(config, clock)
    yield app
    storage_of(app).close()


def _hold_lock(database_url: str, locked: threading.Event) -> None:
    url = make_url(database_url)
    options = url.query["options"]
    assert isinstance(options, str)
    with psycopg.connect(
        host=url.host, port=url.port, dbname=url.database, user=url.username, options=options
    ) as connection:
        connection.execute("LOCK TABLE cds_card_feedback IN ACCESS EXCLUSIVE MODE")
        locked.set()
        connection.execute(f"SELECT pg_sleep({LOCK_SECONDS})")


def test_a_hung_snooze_look_up_shows_every_card_and_is_counted(
    locked_app: Flask, database_url: str, clock: Clock
) -> None:
    storage: Storage = storage_of(locked_app)
    show_and_override(locked_app, "LEUKOPENIA_MONITOR", "already-addressed", clock)
    rules = {"LEUKOPENIA_MONITOR"}
    assert storage.snoozed_rules(SERVICE_ID, PATIENT, rules) == rules  # snoozed

    locked = threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(database_url, locked))
    holder.start()
    try:
        assert locked.wait(10)
        snoozed = storage.snoozed_rules(SERVICE_ID, PATIENT, rules)
    finally:
        holder.join()
    assert snoozed == set()  # every card shown
    assert storage.counters.snapshot()[SNOOZE_CHECK_FAILURES] == 1
    # The rest of the storage keeps the longer time-out (feedback, history, readiness).
    with storage.engine.connect() as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar() == "30s"
