"""deploy/load_fixtures.py against a mocked HAPI (responses): the PUTs it sends."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
import requests
import responses

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "patient-view"
BASE = "http://fhir.test/fhir"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # 45 days after the fixtures' anchor


def _load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "load_fixtures", ROOT / "deploy" / "load_fixtures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


loader = _load_module()


def _expected_resources() -> dict[str, dict]:
    """Every loadable resource of the fixtures, read independently of the loader."""
    expected: dict[str, dict] = {}
    for path in sorted(FIXTURES.glob("*.json")):
        for value in json.loads(path.read_text())["prefetch"].values():
            if not value:
                continue
            items = (
                [e["resource"] for e in value.get("entry", [])]
                if value["resourceType"] == "Bundle"
                else [value]
            )
            for resource in items:
                expected.setdefault(f"{resource['resourceType']}/{resource['id']}", resource)
    return expected


@responses.activate
def test_puts_every_fixture_resource_by_id_with_dates_moved() -> None:
    responses.add(responses.PUT, re.compile(rf"{BASE}/\w+/[^/]+"), status=201)
    with requests.Session() as session:
        count = loader.load(session, BASE, FIXTURES, now=NOW)

    expected = _expected_resources()
    puts = [call.request for call in responses.calls]
    assert all(request.method == "PUT" for request in puts)
    paths = [request.url.removeprefix(f"{BASE}/") for request in puts]
    assert count == len(puts) == len(expected)
    assert sorted(paths) == sorted(expected)  # once each, by type and id
    kinds = {path.split("/")[0] for path in paths}
    assert kinds == set(loader.RESOURCE_TYPES)  # the fixtures hold all six types
    # Patients first, so the others' subject references resolve.
    first_other = next(i for i, p in enumerate(paths) if not p.startswith("Patient/"))
    assert all(p.startswith("Patient/") for p in paths[:first_other])
    assert not any(p.startswith("Patient/") for p in paths[first_other:])

    for request in puts:
        assert request.headers["Content-Type"] == "application/fhir+json"
        body = json.loads(request.body)
        assert request.url == f"{BASE}/{body['resourceType']}/{body['id']}"

    # pv03's neutrophil count: dates moved by 45 days, birthDate kept.
    by_path = {p: json.loads(r.body) for p, r in zip(paths, puts, strict=True)}
    patient = by_path["Patient/pv03"]
    assert patient["birthDate"] == expected["Patient/pv03"]["birthDate"]
    condition = by_path["Condition/cond-pv03-1"]
    original = expected["Condition/cond-pv03-1"]["onsetDateTime"]
    assert condition["onsetDateTime"] != original
    shifted = datetime.fromisoformat(condition["onsetDateTime"].replace("Z", "+00:00"))
    before = datetime.fromisoformat(original.replace("Z", "+00:00"))
    assert (shifted - before).days == 45


@responses.activate
def test_a_refused_resource_stops_the_load_with_the_servers_answer() -> None:
    responses.add(
        responses.PUT,
        re.compile(rf"{BASE}/\w+/[^/]+"),
        status=400,
        json={"resourceType": "OperationOutcome", "issue": [{"diagnostics": "bad thing"}]},
    )
    with requests.Session() as session, pytest.raises(loader.LoadError, match="bad thing"):
        loader.load(session, BASE, FIXTURES, now=NOW)
    assert len(responses.calls) == 1


@responses.activate
def test_waits_for_the_capability_statement() -> None:
    responses.add(responses.GET, f"{BASE}/metadata", body=requests.ConnectionError("refused"))
    responses.add(responses.GET, f"{BASE}/metadata", status=503)
    responses.add(
        responses.GET,
        f"{BASE}/metadata",
        json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"},
    )
    sleeps: list[float] = []
    with requests.Session() as session:
        loader.wait_for_server(session, BASE, 60, interval_seconds=2, sleep=sleeps.append)
    assert sleeps == [2, 2]


@responses.activate
def test_gives_up_when_the_server_never_answers() -> None:
    responses.add(responses.GET, f"{BASE}/metadata", status=503)
    ticks = iter(range(0, 1000, 10))
    with requests.Session() as session, pytest.raises(loader.LoadError, match="HTTP 503"):
        loader.wait_for_server(
            session, BASE, 25, sleep=lambda _: None, clock=lambda: float(next(ticks))
        )


@responses.activate
def test_main_waits_then_loads_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    responses.add(responses.GET, f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    responses.add(responses.PUT, re.compile(rf"{BASE}/\w+/[^/]+"), status=200)
    assert loader.main(["--fhir-base", f"{BASE}/", str(FIXTURES)]) == 0
    assert f"loaded {len(_expected_resources())} resources" in capsys.readouterr().out
    assert responses.calls[0].request.url == f"{BASE}/metadata"


def test_null_keys_and_foreign_types_are_skipped() -> None:
    document = {
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1"},
            "weights": None,
            "other": {
                "resourceType": "Bundle",
                "entry": [
                    {"resource": {"resourceType": "Specimen", "id": "s1"}},
                    {"resource": {"resourceType": "Observation", "id": "o1"}},
                    {"resource": {"resourceType": "Observation"}},
                ],
            },
        }
    }
    chosen = loader.resources_to_load([document, document])
    assert [(r["resourceType"], r["id"]) for r in chosen] == [
        ("Patient", "p1"),
        ("Observation", "o1"),
    ]
