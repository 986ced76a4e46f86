"""`cds-service serve --production`: gunicorn as deployed, called over HTTP.

Two sync workers behind one port: calls are answered by both, /metrics adds up every
worker's counts (Prometheus multiprocess mode), and SIGHUP replaces the workers without
failing a call.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.core.conformance import check_response
from tests.core.fixture_files import SCENARIOS, request_of

SERVICE = "/cds-services/leukopenia-patient-view"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _workers(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()}


def _wait_for_workers(pid: int, count: int, old: set[int] = frozenset()) -> set[int]:
    for _ in range(300):
        workers = _workers(pid)
        if len(workers) == count and not workers & old:
            return workers
        time.sleep(0.1)
    pytest.fail(f"gunicorn did not reach {count} new workers: {workers}")


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen]]:
    workdir = tmp_path_factory.mktemp("production")
    port = _free_port()
    env = {
        **os.environ,
        "CDS_ENV": "development",  # no JWT issuer to configure; gunicorn settings are the same
        "CDS_DATABASE_URL": f"sqlite:///{workdir}/cds.sqlite3",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        "GUNICORN_WORKERS": "2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cds_service.cli", "serve", "--production", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "server.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                if process.poll() is not None:
                    pytest.fail((workdir / "server.log").read_text())
            time.sleep(0.1)
        _wait_for_workers(process.pid, 2)
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _hook_calls_counted(base: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=5).text
    pattern = (
        r"cds_hook_request_duration_seconds_count"
        r'\{[^}]*service="leukopenia-patient-view"[^}]*\} (\S+)'
    )
    return sum(float(value) for value in re.findall(pattern, text))


def test_concurrent_calls_are_answered_and_counted_across_workers(production):
    base, _ = production
    scenario = next(s for s in SCENARIOS if s["name"] == "sle-azathioprine-febrile-neutropenia")
    body = request_of(scenario)
    before = _hook_calls_counted(base)
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda _: requests.post(f"{base}{SERVICE}", json=body, timeout=20), range(16))
        )
    assert [r.status_code for r in responses] == [200] * 16
    rules = {
        tuple(sorted(c["source"]["topic"]["code"] for c in r.json()["cards"])) for r in responses
    }
    assert len(rules) == 1 and "FEBRILE_NEUTROPENIA" in next(iter(rules))
    check_response(responses[0].json())
    # Each worker writes its own metric files; /metrics, answered by one of them, sums all.
    assert _hook_calls_counted(base) == before + 16
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}


def test_sighup_replaces_workers_without_failing_calls(production):
    base, process = production
    scenario = next(s for s in SCENARIOS if s["name"] == "sle-azathioprine-febrile-neutropenia")
    body = request_of(scenario)
    old = _workers(process.pid)
    process.send_signal(signal.SIGHUP)
    statuses = [
        requests.post(f"{base}{SERVICE}", json=body, timeout=20).status_code for _ in range(5)
    ]
    _wait_for_workers(process.pid, 2, old)
    statuses += [
        requests.post(f"{base}{SERVICE}", json=body, timeout=20).status_code for _ in range(3)
    ]
    assert statuses == [200] * 8
