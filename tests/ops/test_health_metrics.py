"""/healthz, /readyz and /metrics: no JWT needed, and the metrics move after a call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from cds_service import create_app
from cds_service.fhir.timeshift import replay_now
from cds_service.runtime import runtime
from tests.support.fhir_stub import FhirStub, served_resources
from tests.support.settings import production

FIXTURES = Path(__file__).parents[2] / "fixtures" / "patient-view"
SERVICE = "/cds-services/leukopenia-patient-view"


@pytest.fixture
def app(tmp_path):
    return create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp_path}/cds.sqlite3"})


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_healthz_answers_ok(app):
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_ok_when_the_database_answers(app):
    response = app.test_client().get("/readyz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_503_with_a_reason_when_the_database_is_unreachable(app, monkeypatch):
    def broken():
        raise OperationalError("SELECT 1", {}, Exception("down"))

    monkeypatch.setattr(runtime(app).storage.engine, "connect", broken)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "reason": "database unreachable"}


def test_health_and_metrics_need_no_jwt_in_production(tmp_path):
    app = create_app(production(DATABASE_URL=f"sqlite:///{tmp_path}/cds.sqlite3"))
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/cds-services").status_code == 401  # the CDS endpoints still need one


def test_metrics_move_after_a_hook_call(app):
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    request = replay_now(json.loads((FIXTURES / "sle-moderate-neutropenia.json").read_text()))
    assert client.post(SERVICE, json=request).status_code == 200
    after = client.get("/metrics")
    assert after.mimetype == "text/plain"
    text = after.get_data(as_text=True)
    latency = "cds_hook_request_duration_seconds_count"
    labels = {"service": "leukopenia-patient-view", "hook": "patient-view", "status": "200"}
    assert _metric(text, latency, **labels) == _metric(before, latency, **labels) + 1
    cards = {"rule": "NEUTROPENIA_MODERATE", "indicator": "warning"}
    assert (
        _metric(text, "cds_cards_total", **cards) == _metric(before, "cds_cards_total", **cards) + 1
    )
    prefetch = {"key": "counts", "prefetch": "present", "result": "used"}
    assert _metric(text, "cds_prefetch_keys_total", **prefetch) == (
        _metric(before, "cds_prefetch_keys_total", **prefetch) + 1
    )
    assert "patient" not in _labels_values(text, "cds_cards_total")


def _labels_values(text: str, name: str) -> str:
    return " ".join(line for line in text.splitlines() if line.startswith(name))


def test_rejected_jwt_is_counted(app):
    client = app.test_client()
    name = "cds_auth_failures_total"
    before = _metric(client.get("/metrics").get_data(as_text=True), name, event="auth_rejected")
    response = client.get("/cds-services", headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status_code == 401
    after = _metric(client.get("/metrics").get_data(as_text=True), name, event="auth_rejected")
    assert after == before + 1


def test_feedback_outcomes_and_snooze_suppression_are_counted(app):
    client = app.test_client()
    request = replay_now(json.loads((FIXTURES / "sle-moderate-neutropenia.json").read_text()))
    card = client.post(SERVICE, json=request).json["cards"][0]
    runtime(app).storage.flush()
    config = runtime(app).settings
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": card_time(),
                "overrideReason": {
                    "reason": {
                        "system": config.snooze_reason_system,
                        "code": config.snooze_reason_codes[0],
                    }
                },
            }
        ]
    }
    before = client.get("/metrics").get_data(as_text=True)
    assert client.post(SERVICE + "/feedback", json=feedback).status_code == 200
    assert client.post(SERVICE, json=request).json["cards"] == []
    text = client.get("/metrics").get_data(as_text=True)
    name = "cds_feedback_total"
    assert (
        _metric(text, name, outcome="overridden") == _metric(before, name, outcome="overridden") + 1
    )
    name, rule = "cds_cards_suppressed_total", card["source"]["topic"]["code"]
    assert _metric(text, name, rule=rule) == _metric(before, name, rule=rule) + 1


def card_time() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def test_validation_cache_outcomes_are_counted(app):
    from cds_service.fhir import validation

    validation.clear_cache()
    client = app.test_client()
    request = replay_now(json.loads((FIXTURES / "sle-moderate-neutropenia.json").read_text()))
    name = "cds_fhir_validations_total"
    before = client.get("/metrics").get_data(as_text=True)
    assert client.post(SERVICE, json=request).status_code == 200
    first = client.get("/metrics").get_data(as_text=True)
    misses = _metric(first, name, cache="miss") - _metric(before, name, cache="miss")
    assert misses > 0
    assert _metric(first, name, cache="hit") == _metric(before, name, cache="hit")
    assert client.post(SERVICE, json=request).status_code == 200  # the same chart, reopened
    second = client.get("/metrics").get_data(as_text=True)
    assert _metric(second, name, cache="hit") - _metric(first, name, cache="hit") == misses
    assert _metric(second, name, cache="miss") == _metric(first, name, cache="miss")


def test_the_fhir_calls_of_a_hook_call_are_counted(app):
    """The app gives the FHIR client its metrics as the fetch observer (app.py)."""
    client = app.test_client()
    request = replay_now(json.loads((FIXTURES / "sle-moderate-neutropenia.json").read_text()))
    name = "cds_fhir_fetch_duration_seconds_count"
    before = _metric(client.get("/metrics").get_data(as_text=True), name, outcome="ok")
    with FhirStub(served_resources(request)) as stub:
        response = client.post(
            SERVICE, json={**request, "prefetch": {}, "fhirServer": stub.base_url}
        )
        assert response.status_code == 200
        calls = len(stub.calls)
    after = _metric(client.get("/metrics").get_data(as_text=True), name, outcome="ok")
    assert calls > 0 and after == before + calls
