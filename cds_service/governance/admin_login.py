"""Failed logins to the admin dashboard: logged, counted, and limited per client address.

The limit lives in each worker process's memory: with N gunicorn workers (and R replicas) a
client gets up to N x R x MAX_FAILURES tries per window, as the kernel spreads its
connections over the workers. That still turns a password search of millions of tries into
one of a few thousand per day; the 12-character minimum password does the rest.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from time import monotonic

from flask import Request

from cds_service.ops.metrics import ADMIN_LOGIN_FAILURES

log = logging.getLogger(__name__)

MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60
# Addresses remembered at most (oldest forgotten first): memory stays bounded under a flood.
MAX_ADDRESSES = 10_000


class FailedLogins:
    """Failed logins per client address within the last `window` seconds."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window = window
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int:
        """Seconds until `address` may try again; 0 when it may try now."""
        with self._lock:
            if address not in self._failures:
                return 0
            times = self._recent(address)
            if len(times) < self._max_failures:
                return 0
            return max(1, round(times[0] + self._window - self._clock()))

    def record_failure(self, address: str) -> None:
        with self._lock:
            self._recent(address).append(self._clock())
            self._failures.move_to_end(address)
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)
        ADMIN_LOGIN_FAILURES.inc()
        # The address only: never the password, nor the user name (often a mistyped password).
        log.warning("admin login failed", extra={"event": "admin_login_failed", "client": address})

    def forget(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)

    def _recent(self, address: str) -> deque[float]:
        times = self._failures.setdefault(address, deque())
        while times and times[0] <= self._clock() - self._window:
            times.popleft()
        return times


def client_address(request: Request, trusted_proxies: str) -> str:
    """The caller's address. Behind the reverse proxy, the last X-Forwarded-For entry (the one
    the proxy added), trusted only from the addresses gunicorn trusts, `trusted_proxies`
    (GUNICORN_FORWARDED_ALLOW_IPS): anyone else could write their own."""
    peer = request.remote_addr or "unknown"
    forwarded = request.headers.getlist("X-Forwarded-For")
    if not forwarded or not _trusted_proxy(peer, trusted_proxies):
        return peer
    last = forwarded[-1].split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return peer


def _trusted_proxy(peer: str, trusted_proxies: str) -> bool:
    entries = {entry.strip() for entry in trusted_proxies.split(",")}
    return "*" in entries or peer in entries
