"""Shared pieces for the order-hook tests: the app, the scenario manifest, a request sender."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.fhir.timeshift import replay_now

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ORDER_HOOKS = ("order-select", "order-sign")
SERVICE_FOR_HOOK = {
    "order-select": "leukopenia-order-select",
    "order-sign": "leukopenia-order-sign",
}


def order_scenarios() -> list[dict[str, Any]]:
    manifest = json.loads((FIXTURES / "scenarios.json").read_text())
    return [entry for entry in manifest if entry["hook"] in ORDER_HOOKS]


def load_request(entry: dict[str, Any]) -> dict[str, Any]:
    return replay_now(json.loads((FIXTURES / entry["file"]).read_text()))


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    app = create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp_path}/cds.sqlite3"})
    return app.test_client()


def call(client: FlaskClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = client.post(f"/cds-services/{SERVICE_FOR_HOOK[body['hook']]}", json=body)
    return response.status_code, response.get_json()


def cards_by_rule(cards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {card["source"]["topic"]["code"]: card for card in cards}
