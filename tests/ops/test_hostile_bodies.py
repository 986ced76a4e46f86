"""Hostile bodies against `cds-service serve --production` (gevent workers): each gets a quick
JSON 4xx, no worker is killed, and a normal call is still answered beside them.

Before the input limits, a 2-3 MB body holding an array of a million elements was validated
element by element (~26 s), and a few such calls got every worker killed at gunicorn's 30 s
timeout. The client time-outs below are guards, not measurements."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
import requests

from tests.support.network import worker_pids
from tests.support.production_server import production_server
from tests.support.scenarios import SCENARIOS, request_of

SERVICE = "/cds-services/leukopenia-patient-view"
FEBRILE = request_of(
    next(s for s in SCENARIOS if s["name"] == "sle-azathioprine-febrile-neutropenia")
)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen]]:
    with production_server(tmp_path_factory.mktemp("hostile")) as server:
        yield server


def _first_count(body: dict[str, Any]) -> dict[str, Any]:
    counts = body["prefetch"]["counts"]["entry"]
    return counts[0]["resource"]


def _with_huge_array(items: int) -> bytes:
    body = orjson.loads(orjson.dumps(FEBRILE))
    _first_count(body)["interpretation"] = [0] * items
    return orjson.dumps(body)


def _nested(levels: int) -> bytes:
    return orjson.dumps(FEBRILE | {"extension": "DEEP"}).replace(
        b'"DEEP"', b"[" * levels + b"]" * levels
    )


def _many_resources(count: int) -> bytes:
    body = orjson.loads(orjson.dumps(FEBRILE))
    body["prefetch"]["counts"]["entry"] = [
        {"resource": {"resourceType": "Observation", "id": f"w{n}"}} for n in range(count)
    ]
    return orjson.dumps(body)


def _post(base: str, body: bytes) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    return requests.post(f"{base}{SERVICE}", data=body, headers=headers, timeout=20)


def _rules(answer: requests.Response) -> list[str]:
    return sorted(card["source"]["topic"]["code"] for card in answer.json()["cards"])


def test_hostile_bodies_get_a_json_4xx_and_normal_calls_go_on(production):
    base, process = production
    workers = set(worker_pids(process.pid))
    million = _with_huge_array(1_000_000)
    bodies = [million] * 4 + [_many_resources(10_001), _nested(5000)]
    with ThreadPoolExecutor(6) as pool:
        hostile = list(pool.map(lambda body: _post(base, body), bodies))
    normal = _post(base, orjson.dumps(FEBRILE))
    assert [r.status_code for r in hostile] == [413] * 5 + [400]
    assert hostile[0].json() == {"error": "the request body holds more than 500000 JSON values"}
    assert hostile[4].json() == {"error": "the request holds more than 10000 FHIR resources"}
    assert hostile[5].json() == {"error": "the request body is nested too deeply"}
    assert normal.status_code == 200 and "FEBRILE_NEUTROPENIA" in _rules(normal)
    assert set(worker_pids(process.pid)) == workers  # none killed or replaced


def test_a_resource_too_large_to_check_is_reported_not_used(production):
    base, _ = production
    body = orjson.loads(orjson.dumps(FEBRILE))
    count = _first_count(body)
    count["note"] = [{"text": "x"}] * 50_000  # 100,000 values: within the body's limit
    answer = _post(base, orjson.dumps(body))
    assert answer.status_code == 200
    quality = [c for c in answer.json()["cards"] if c["source"]["topic"]["code"] == "DATA_QUALITY"]
    assert quality and "too large to check" in quality[0]["detail"]
