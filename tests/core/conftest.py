"""Shared fixtures for the core tests: an app on a throw-away SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.knowledge import Knowledge, load_knowledge


@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    return load_knowledge()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp_path}/cds.sqlite3"})
    yield app
    app.extensions["cds_storage"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, service_id: str, body: Any, **kwargs: Any):
    return client.post(f"/cds-services/{service_id}", json=body, **kwargs)
