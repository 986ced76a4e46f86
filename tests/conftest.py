"""Fixtures for every test: the app on a throw-away SQLite database, its client, the
knowledge, and no FHIR answers remembered from an earlier test. Shared helpers that are not
fixtures live in tests/support/."""

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
