"""Real server processes for end-to-end tests: `cds-service serve --production` (gunicorn)
and the helpers to wait for them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Set
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.network import free_port, worker_pids


def wait_for_workers(pid: int, count: int, old: Set[int] = frozenset()) -> set[int]:
    """The master's workers once there are `count` of them and none is in `old`."""
    workers: set[int] = set()
    for _ in range(300):
        workers = set(worker_pids(pid))
        if len(workers) == count and not workers & old:
            return workers
        time.sleep(0.1)
    pytest.fail(f"gunicorn did not reach {count} new workers: {workers}")


@contextmanager
def running(
    command: list[str], ready_url: str, log: Path, verify: str | bool = True, **popen: Any
) -> Iterator[subprocess.Popen]:
    """`command` as a process whose stderr goes to `log`, once `ready_url` answers 200
    (`verify`: the CA file for an https `ready_url`).

    Fails the test with the log if the process exits first; terminates it afterwards."""
    with open(log, "wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, **popen)
    try:
        for _ in range(300):
            try:
                if requests.get(ready_url, timeout=1, verify=verify).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                # Gunicorn accepts connections before its workers have loaded the app.
                if process.poll() is not None:
                    pytest.fail(log.read_text())
            time.sleep(0.1)
        else:
            pytest.fail(f"{ready_url} did not answer")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def production_server(
    workdir: Path, workers: int = 2, **extra_env: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """The server's base URL and master process; development profile (no JWT issuer to set
    up), SQLite and metrics files in `workdir`. The gunicorn settings are production's,
    unless `extra_env` (GUNICORN_* variables) changes them."""
    port = free_port()
    env = {
        **os.environ,
        "CDS_ENV": "development",
        "CDS_DATABASE_URL": f"sqlite:///{workdir}/cds.sqlite3",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        "GUNICORN_WORKERS": str(workers),
        **extra_env,
    }
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "cds_service.cli", "serve", "--production", "--port"]
    log = workdir / "server.log"
    with running([*command, str(port)], f"{base}/readyz", log, cwd=workdir, env=env) as process:
        wait_for_workers(process.pid, workers)
        yield base, process
