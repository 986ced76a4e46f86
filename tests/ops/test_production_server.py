"""`cds-service serve --production`: gunicorn as deployed, called over HTTP.

Two gevent workers behind one port: calls are answered by both, /metrics adds up every
worker's counts (Prometheus multiprocess mode), and SIGHUP replaces the workers without
failing a call.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.support.conformance import check_response
from tests.support.fhir_stub import FhirStub, served_resources
from tests.support.network import eventually, worker_pids
from tests.support.production_server import production_server, wait_for_workers
from tests.support.scenarios import SCENARIOS, request_of

SERVICE = "/cds-services/leukopenia-patient-view"


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen]]:
    with production_server(tmp_path_factory.mktemp("production")) as server:
        yield server


def _hook_calls_counted(base: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=5).text
    pattern = (
        r"cds_hook_request_duration_seconds_count"
        r'\{[^}]*service="leukopenia-patient-view"[^}]*\} (\S+)'
    )
    return sum(float(value) for value in re.findall(pattern, text))


def _febrile_neutropenia_request() -> dict[str, Any]:
    scenario = next(s for s in SCENARIOS if s["name"] == "sle-azathioprine-febrile-neutropenia")
    return request_of(scenario)


def _rules(answer: requests.Response) -> list[str]:
    return sorted(card["source"]["topic"]["code"] for card in answer.json()["cards"])


def test_concurrent_calls_are_answered_and_counted_across_workers(production):
    base, _ = production
    body = _febrile_neutropenia_request()
    before = _hook_calls_counted(base)
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda _: requests.post(f"{base}{SERVICE}", json=body, timeout=20), range(16))
        )
    assert [r.status_code for r in responses] == [200] * 16
    rules = {tuple(_rules(r)) for r in responses}
    assert len(rules) == 1 and "FEBRILE_NEUTROPENIA" in next(iter(rules))
    check_response(responses[0].json())
    # Each worker writes its own metric files; /metrics, answered by one of them, sums all.
    assert _hook_calls_counted(base) == before + 16
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}


def test_sighup_replaces_workers_without_failing_calls(production):
    base, process = production
    body = _febrile_neutropenia_request()
    old = set(worker_pids(process.pid))
    process.send_signal(signal.SIGHUP)
    statuses = [
        requests.post(f"{base}{SERVICE}", json=body, timeout=20).status_code for _ in range(5)
    ]
    wait_for_workers(process.pid, 2, old)
    statuses += [
        requests.post(f"{base}{SERVICE}", json=body, timeout=20).status_code for _ in range(3)
    ]
    assert statuses == [200] * 8


def test_fetch_mode_in_gevent_workers_sends_every_query_at_once(production):
    # No prefetch: the data comes from a FHIR server that takes 100 ms per call. The FHIR
    # calls of a hook call run in greenlets of the gevent worker.
    base, _ = production
    body = _febrile_neutropenia_request()
    prefetched = requests.post(f"{base}{SERVICE}", json=body, timeout=20)
    with FhirStub(served_resources(body), delay_seconds=0.1) as stub:
        fetching = {k: v for k, v in body.items() if k != "prefetch"} | {
            "fhirServer": stub.base_url
        }
        alone = requests.post(f"{base}{SERVICE}", json=fetching, timeout=20)
        in_one_round = stub.max_in_flight
        with ThreadPoolExecutor(4) as pool:
            together = list(
                pool.map(
                    lambda _: requests.post(f"{base}{SERVICE}", json=fetching, timeout=20), range(4)
                )
            )
    assert in_one_round == len(body["prefetch"])  # one call's queries, all out at once
    assert "FEBRILE_NEUTROPENIA" in _rules(prefetched)
    assert [_rules(answer) for answer in [alone, *together]] == [_rules(prefetched)] * 5


def test_fetch_calls_abandoned_at_the_deadline_are_stopped_in_gevent_workers(production):
    # Issue 22: a FHIR server trickling its answers a byte at a time kept the 9 sockets and
    # greenlets of each hook call reading long after the answer (2 s deadline here).
    base, _ = production
    body = _febrile_neutropenia_request()
    stub = FhirStub(served_resources(body))
    stub.trickle_seconds = 0.25
    with stub:
        fetching = {k: v for k, v in body.items() if k != "prefetch"} | {
            "fhirServer": stub.base_url
        }
        answer = requests.post(f"{base}{SERVICE}", json=fetching, timeout=30)
        assert answer.status_code == 412  # no data arrived in time
        assert len(stub.calls) == len(body["prefetch"])
        assert eventually(lambda: stub.trickling == 0)  # every connection was closed
