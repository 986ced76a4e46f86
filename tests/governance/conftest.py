"""Fixtures for the storage tests: each test gets a fresh database, SQLite always and
PostgreSQL (a schema of its own) when a server answers on 127.0.0.1:5432."""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from cds_service.config import Settings, load_config
from cds_service.governance import Storage, init_app
from tests.support.postgres import postgres_schema, postgres_user

SERVICE_ID = "leukopenia-patient-view"
# The storage of each governed app (governed_app): the app factory keeps it in its Runtime.
_STORAGES: weakref.WeakKeyDictionary[Flask, Storage] = weakref.WeakKeyDictionary()
# A port nothing listens on: connections fail at once, like a database that is down.
UNREACHABLE_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/db/cds.sqlite3"
        return
    user = postgres_user()
    if user is None:
        pytest.skip("no PostgreSQL server at 127.0.0.1:5432")
    with postgres_schema(user) as url:
        yield url


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_config(database_url: str, **overrides: Any) -> Settings:
    return load_config(
        {"ENV": "testing", "DATABASE_URL": database_url, "DATABASE_TIMEOUT_SECONDS": 2, **overrides}
    )


@pytest.fixture
def config(database_url: str) -> Settings:
    return make_config(database_url, ADMIN_PASSWORD="correct horse battery")


def governed_app(config: Settings, clock: Clock) -> Flask:
    """A Flask app with governance alone (feedback endpoint, dashboard), wired as the app
    factory wires it; its storage is `storage_of(app)`."""
    app = Flask(__name__)
    app.config["TESTING"] = True
    _STORAGES[app] = init_app(app, config, {SERVICE_ID}, clock=clock)
    return app


def storage_of(app: Flask) -> Storage:
    return _STORAGES[app]


@pytest.fixture
def app(config: Settings, clock: Clock) -> Iterator[Flask]:
    app = governed_app(config, clock)
    yield app
    storage_of(app).close()


@pytest.fixture
def storage(app: Flask) -> Storage:
    return storage_of(app)


def make_card(rule_id: str, indicator: str = "warning") -> dict[str, Any]:
    """A card shaped like the ones the engine returns."""
    return {
        "uuid": str(uuid.uuid4()),
        "summary": f"{rule_id} summary",
        "indicator": indicator,
        "source": {
            "label": "Leukopenia CDS",
            "url": "https://leukopenia-cds.example.org",
            "topic": {
                "system": "https://leukopenia-cds.example.org/CodeSystem/rule",
                "code": rule_id,
                "display": rule_id,
            },
        },
        "overrideReasons": [
            {
                "system": "https://leukopenia-cds.example.org/CodeSystem/override-reason",
                "code": "already-addressed",
                "display": "Already addressed",
            }
        ],
    }


def feedback_item(
    card_uuid: str,
    outcome: str = "overridden",
    code: str | None = None,
    timestamp: str = "2025-03-03T09:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    item: dict[str, Any] = {"card": card_uuid, "outcome": outcome, "outcomeTimestamp": timestamp}
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": str(uuid.uuid4())}]
    if code is not None:
        item["overrideReason"] = {
            "reason": {
                "system": "https://leukopenia-cds.example.org/CodeSystem/override-reason",
                "code": code,
                "display": code.replace("-", " ").capitalize(),
            }
        }
    return {**item, **extra}
