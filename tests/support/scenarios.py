"""The clinical scenarios in fixtures/ (with their expected and absent cards), moved to today's
date for API calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from cds_service.fhir.timeshift import replay_now
from cds_service.protocol.hooks import ORDER_HOOKS

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SCENARIOS: list[dict[str, Any]] = json.loads((FIXTURES / "scenarios.json").read_text())


def request_of(scenario: dict[str, Any]) -> dict[str, Any]:
    return replay_now(json.loads((FIXTURES / scenario["file"]).read_text()))


def service_for(hook: str) -> str:
    return f"leukopenia-{hook}"


def order_scenarios() -> list[dict[str, Any]]:
    return [scenario for scenario in SCENARIOS if scenario["hook"] in ORDER_HOOKS]


def call(client: FlaskClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST a request to the service of its hook: (status, JSON answer)."""
    response = client.post(f"/cds-services/{service_for(body['hook'])}", json=body)
    return response.status_code, response.get_json()


def cards_by_rule(cards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {card["source"]["topic"]["code"]: card for card in cards}
