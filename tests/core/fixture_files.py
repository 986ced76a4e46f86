"""The clinical scenarios in fixtures/, moved to today's date for API calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cds_service.fhir.timeshift import replay_now

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SCENARIOS: list[dict[str, Any]] = json.loads((FIXTURES / "scenarios.json").read_text())


def request_of(scenario: dict[str, Any]) -> dict[str, Any]:
    return replay_now(json.loads((FIXTURES / scenario["file"]).read_text()))


def service_for(hook: str) -> str:
    return f"leukopenia-{hook}"
