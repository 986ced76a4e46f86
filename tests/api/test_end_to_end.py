"""End to end: `cds-service serve` as a real process, called over HTTP; and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from cds_service.fhir.bundles import flatten
from cds_service.fhir.timeshift import FIXTURE_ANCHOR
from tests.support.conformance import check_response
from tests.support.network import free_port
from tests.support.production_server import running
from tests.support.scenarios import FIXTURES, SCENARIOS, request_of


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "CDS_DATABASE_URL": f"sqlite:///{workdir}/cds.sqlite3"}
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port)]
    with running(command, f"{base}/cds-services", workdir / "serve.log", cwd=workdir, env=env):
        yield base


def test_served_discovery_and_a_critical_fixture(server):
    services = requests.get(f"{server}/cds-services", timeout=5).json()["services"]
    assert "leukopenia-patient-view" in [s["id"] for s in services]
    scenario = next(s for s in SCENARIOS if s["name"] == "sle-azathioprine-febrile-neutropenia")
    response = requests.post(
        f"{server}/cds-services/leukopenia-patient-view", json=request_of(scenario), timeout=10
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    check_response(body)
    assert ("FEBRILE_NEUTROPENIA", "critical") in {
        (c["source"]["topic"]["code"], c["indicator"]) for c in body["cards"]
    }


def test_served_bad_input_is_4xx_not_5xx(server):
    url = f"{server}/cds-services/leukopenia-patient-view"
    assert (
        requests.post(
            url, data="{", headers={"Content-Type": "application/json"}, timeout=5
        ).status_code
        == 400
    )
    assert (
        requests.post(url, data="x", headers={"Content-Type": "text/plain"}, timeout=5).status_code
        == 415
    )


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cds_service.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_evaluates_a_fixture_as_of_its_anchor(tmp_path):
    fixture = FIXTURES / "patient-view" / "sle-wbc-50-per-ul-seed004.json"
    result = _cli("evaluate", str(fixture), "--now", "2026-01-15T12:00:00Z", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    check_response(body)
    assert [c["source"]["topic"]["code"] for c in body["cards"]] == ["NEUTROPENIA_SEVERE"]
    assert not (tmp_path / "instance").exists()  # evaluating touches no database
    text = _cli("evaluate", str(fixture), "--now", "2026-01-15T12:00:00Z", cwd=tmp_path)
    assert "[CRITICAL] NEUTROPENIA_SEVERE" in text.stdout and "received 50 /uL" in text.stdout


def test_cli_evaluates_a_patient_bundle(tmp_path):
    request = request_of(next(s for s in SCENARIOS if s["name"] == "sle-profound-lymphopenia"))
    resources = [r for value in request["prefetch"].values() for r in flatten(value)]
    bundle = tmp_path / "patient.json"
    bundle.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in resources],
            }
        )
    )
    result = _cli("evaluate", str(bundle), "--hook", "patient-view", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    codes = [c["source"]["topic"]["code"] for c in json.loads(result.stdout)["cards"]]
    assert codes == ["LYMPHOPENIA_PROFOUND"]


def test_cli_fixture_replays_dates_to_today(tmp_path):
    fixture = FIXTURES / "patient-view" / "sle-normal-counts.json"
    result = _cli("fixture", str(fixture), cwd=tmp_path)
    original = json.loads(fixture.read_text())
    moved = json.loads(result.stdout)
    assert moved["hookInstance"] == original["hookInstance"]
    before = original["prefetch"]["counts"]["entry"][0]["resource"]["effectiveDateTime"]
    after = moved["prefetch"]["counts"]["entry"][0]["resource"]["effectiveDateTime"]
    shift = datetime.fromisoformat(after) - datetime.fromisoformat(before)
    expected = datetime.now(UTC) - FIXTURE_ANCHOR
    assert abs(shift - expected) < timedelta(minutes=5)
