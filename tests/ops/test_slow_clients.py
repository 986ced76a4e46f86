"""Slow clients without a proxy: clients that trickle their requests (slowloris) must not take
the server down. Each such connection holds a greenlet of a gevent worker, not the worker, so
/healthz and hook calls are still answered (with sync workers, one trickling connection per
worker made /healthz time out for 30 s).

Bounded in time: the slow clients stop when the test ends; no timing is asserted beyond the
clients' own time-outs."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.production_server import production_server
from tests.support.scenarios import SCENARIOS, request_of

WORKERS = 2
SLOW_CLIENTS = 4 * WORKERS
SERVICE = "/cds-services/leukopenia-patient-view"


def _trickle(address: tuple[str, int], partial_head: bool, stop: threading.Event) -> None:
    """Send a request a byte at a time, never finishing it, until `stop`."""
    with socket.create_connection(address, timeout=5) as connection:
        head = f"POST {SERVICE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        if not partial_head:
            head += "Content-Length: 100000\r\n\r\n{"
        connection.sendall(head.encode())
        while not stop.wait(0.5):
            try:
                connection.sendall(b" ")  # a header line or body that never ends
            except OSError:
                return  # the server closed it: that is allowed too


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with production_server(tmp_path_factory.mktemp("slow-clients"), WORKERS) as (base, _):
        yield base


def test_trickling_clients_do_not_block_health_or_hook_calls(server):
    parts = urlsplit(server)
    address = (parts.hostname, parts.port)
    stop = threading.Event()
    clients = [
        threading.Thread(target=_trickle, args=(address, n % 2 == 0, stop), daemon=True)
        for n in range(SLOW_CLIENTS)
    ]
    for client in clients:
        client.start()
    try:
        body = request_of(
            next(s for s in SCENARIOS if s["name"] == "sle-azathioprine-febrile-neutropenia")
        )
        stop.wait(1.0)  # every slow client is connected and trickling
        for _ in range(3):
            assert requests.get(f"{server}/healthz", timeout=10).status_code == 200
            assert requests.post(f"{server}{SERVICE}", json=body, timeout=20).status_code == 200
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=10)
