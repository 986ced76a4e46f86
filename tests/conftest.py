"""Fixtures for every test: the app on a throw-away SQLite database, its client, the
knowledge, no FHIR answers remembered from an earlier test, and no socket left for the garbage
collector. Shared helpers that are not fixtures live in tests/support/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.fhir.cache import ANSWERS
from cds_service.knowledge import Knowledge, load_knowledge
from cds_service.runtime import runtime
from tests.support.sockets import WATCH


@pytest.fixture(autouse=True)
def closes_its_sockets() -> Iterator[None]:
    """Each test closes the sockets it opens (tests/support/sockets.py says why)."""
    WATCH.start()
    yield
    if leaked := WATCH.left_to_the_collector():
        pytest.fail(f"{leaked} socket(s) left open for the garbage collector to close")


@pytest.fixture(autouse=True)
def forget_fhir_answers() -> Iterator[None]:
    """Each test starts with no remembered FHIR answers (tests reuse server URLs and tokens)."""
    ANSWERS.clear()
    yield
    ANSWERS.clear()


@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    return load_knowledge()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp_path}/cds.sqlite3"})
    yield app
    runtime(app).close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
