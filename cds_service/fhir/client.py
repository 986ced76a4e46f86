"""Calls to the EHR's FHIR server: one connection pool per process, the calls of one hook call
all in flight at once (`FetchRound`), bounded together in time and bytes (`CallBudget`) and
each in time and size, and the access token sent only to fhirServer's origin.

Failures become `FhirUnavailable` with a short reason that never contains a URL, a token or
patient data, because reasons end up in logs and in cards.

Calls still out at the deadline are stopped, not left running (issue 22: a server trickling
bytes kept 9 sockets and greenlets per hook call): their sockets are shut down, which ends a
blocked read in a thread or a greenlet at once, and under gevent their greenlets are killed.
"""

from __future__ import annotations

import _socket
import contextlib
import logging
import os
import queue
import socket
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, lru_cache, partial
from itertools import count
from time import monotonic
from typing import Any, Protocol

import gevent
import requests
from gevent import monkey
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from cds_service.config import Settings
from cds_service.fhir import links as fhir_links
from cds_service.fhir.cache import ANSWERS, cache_key
from cds_service.protocol import json_body

logger = logging.getLogger(__name__)
# urllib3 logs each request line at DEBUG, and FHIR query strings hold patient ids.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

FHIR_JSON_TYPES = ("application/fhir+json", "application/json")
CHUNK_BYTES = 64 * 1024
POOL_CONNECTIONS_PER_HOST = 64
LATE = "the FHIR server did not answer in time"


class FetchObserver(Protocol):
    """Told of every FHIR call: how long it took and whether it brought an answer. The
    application gives one (its metrics); the client itself reports to nobody else."""

    def __call__(self, seconds: float, ok: bool) -> None: ...


def unobserved(seconds: float, ok: bool) -> None:
    """The observer when none is given (the CLI, tests): the call is not reported."""


class FhirUnavailable(Exception):
    """FHIR data could not be obtained; the message is a reason safe to log and show."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status  # the FHIR server's HTTP status, when it answered with an error


@dataclass(frozen=True)
class FhirServer:
    """The request's fhirServer and the token that may be sent to it (and only to it)."""

    base_url: str
    access_token: str | None

    def url(self, relative: str) -> str:
        return f"{self.base_url.rstrip('/')}/{relative}"

    def owns(self, url: str) -> bool:
        """Whether `url` is on fhirServer (origin and base path), so the token may go there."""
        return fhir_links.on_server(url, self.base_url)

    def __repr__(self) -> str:  # keeps the token out of reprs in logs and tracebacks
        return "FhirServer(<redacted>)"


def fhir_server_for(base_url: str | None, access_token: str | None, config: Settings) -> FhirServer:
    """The request's FHIR server if this service may call it, else FhirUnavailable."""
    if not base_url:
        raise FhirUnavailable("the request has no fhirServer")
    base_origin = fhir_links.base_origin(base_url)
    if base_origin is None:
        raise FhirUnavailable("fhirServer is not a plain http(s) URL")
    if base_origin.scheme == "http" and not config.development:
        raise FhirUnavailable("fhirServer must use https")
    if not access_token and not config.reads_fhir_without_token:
        raise FhirUnavailable("the request has no fhirAuthorization access token")
    return FhirServer(base_url, access_token or None)


# The connections the FHIR call running in this thread or greenlet has used (FetchRound sets
# it per call): what to shut down when the call is abandoned at the deadline. A context
# variable, because greenlets and threads each have their own context (a threading.local made
# before gevent patches the worker would be shared by all its greenlets).
class _CallConnections:
    """The connections one FHIR call has used, and whether the call was abandoned."""

    def __init__(self) -> None:
        self.connections: list[HTTPConnection] = []
        self.stopped = False

    def stop(self) -> None:
        """Shut down every connection, and any the call opens from now on."""
        self.stopped = True
        for connection in list(self.connections):
            _shut_down(connection)


_CALL_CONNECTIONS: ContextVar[_CallConnections | None] = ContextVar(
    "fhir_call_connections", default=None
)


def _used_by_this_call(connection: HTTPConnection) -> None:
    call = _CALL_CONNECTIONS.get()
    if call is not None:
        call.connections.append(connection)
        if call.stopped:  # abandoned while connecting: end it now
            _shut_down(connection)


class _CallHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _used_by_this_call(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _used_by_this_call(self)  # a pooled connection, reused
        super().request(*args, **kwargs)


class _CallHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _used_by_this_call(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _used_by_this_call(self)
        super().request(*args, **kwargs)


class _CallHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _CallHTTPConnection


class _CallHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _CallHTTPSConnection


_CALL_POOLS = {"http": _CallHTTPConnectionPool, "https": _CallHTTPSConnectionPool}


class _Adapter(HTTPAdapter):
    """requests' adapter whose connections tell the call using them (see _CALL_CONNECTIONS)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _CALL_POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> PoolManager:
        manager: PoolManager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools have connections of their own
            manager.pool_classes_by_scheme = _CALL_POOLS
        return manager


def _shut_down(connection: HTTPConnection) -> None:
    """End a connection of an abandoned call: a read blocked on it returns at once. The OS
    socket is shut down (not the SSL layer, which another thread may be inside; gevent keeps
    the OS socket in `_sock`)."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError, TypeError):
            _socket.socket.shutdown(getattr(sock, "_sock", sock), socket.SHUT_RDWR)


# Calls go to requests' transport adapter directly, not through a Session: a Session's
# per-call work (cookie jars, hooks, environment lookups for proxies, CA bundle and .netrc)
# cost about half of a FHIR call's CPU, and none of it is wanted: no cookie may carry over
# between EHRs and patients, redirects are never followed (the adapter does not follow them),
# and a .netrc entry must never replace the EHR's bearer token. What the environment may set
# for a deployment (proxies, a CA bundle) is read once per process, as requests would.
@cache
def _adapter() -> HTTPAdapter:
    # Connections kept per FHIR host: enough for several hook calls' queries at once (a
    # gevent worker serves many calls); beyond it connections are opened and then closed.
    return _Adapter(pool_connections=16, pool_maxsize=POOL_CONNECTIONS_PER_HOST)


@cache
def _verify() -> bool | str:
    """The CA bundle requests would use: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, else certifi's."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


@lru_cache(maxsize=256)
def _proxies(base_url: str) -> dict[str, str]:
    """The proxies the environment sets for fhirServer (HTTPS_PROXY, NO_PROXY, ...)."""
    return get_environ_proxies(base_url)


def _status_problem(status: int) -> str | None:
    if status == 200:
        return None
    if status in (401, 403):
        return f"the FHIR server refused access (HTTP {status})"
    if status in (404, 410):
        return f"not found on the FHIR server (HTTP {status})"
    if 300 <= status < 400:
        return f"the FHIR server redirected (HTTP {status}); not followed"
    if status >= 500:
        return f"FHIR server error (HTTP {status})"
    return f"the FHIR server answered HTTP {status}"


class CallBudget:
    """What one hook call may spend on its FHIR calls together: time (a `monotonic()`
    deadline) and bytes read. The calls run in several threads, hence the lock."""

    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.deadline = monotonic() + seconds
        self.max_bytes = max_bytes
        self._bytes_read = 0
        self._lock = threading.Lock()

    def seconds_left(self) -> float:
        return self.deadline - monotonic()

    def spend(self, size: int) -> None:
        with self._lock:
            self._bytes_read += size
            over = self._bytes_read > self.max_bytes
        if over:
            raise FhirUnavailable(f"this call's FHIR data is larger than {self.max_bytes} bytes")


def _read_body(response: requests.Response, max_bytes: int, budget: CallBudget) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FhirUnavailable(f"the FHIR response is larger than {max_bytes} bytes")
    body = bytearray()
    for chunk in response.iter_content(CHUNK_BYTES):
        body += chunk
        budget.spend(len(chunk))
        if len(body) > max_bytes:
            raise FhirUnavailable(f"the FHIR response is larger than {max_bytes} bytes")
        if budget.seconds_left() <= 0:
            raise FhirUnavailable(LATE)
    return bytes(body)


def get_json(
    server: FhirServer,
    url: str,
    budget: CallBudget,
    config: Settings,
    observe: FetchObserver = unobserved,
) -> Any:
    """GET a FHIR JSON document from fhirServer, timed for `observe`."""
    started = monotonic()
    try:
        value = _get_json(server, url, budget, config)
    except FhirUnavailable:
        observe(monotonic() - started, ok=False)
        raise
    observe(monotonic() - started, ok=True)
    return value


def _get_json(server: FhirServer, url: str, budget: CallBudget, config: Settings) -> Any:
    """The JSON body of a GET on fhirServer, within the hook call's budget."""
    if not server.owns(url):
        raise FhirUnavailable("a link points outside fhirServer; not followed")
    key = cache_key(server.base_url, server.access_token, url)
    remembered = ANSWERS.get(key) if config.fhir_cache_seconds > 0 else None
    if remembered is None:
        body = _download(server, url, budget, config)
    else:
        body = remembered
        budget.spend(len(body))
    # Parsing a large page takes time and memory: not for an answer that is already too late.
    if budget.seconds_left() <= 0:
        raise FhirUnavailable(LATE)
    try:
        value = json_body.loads(body)
    except json_body.TooDeep:
        raise FhirUnavailable("the FHIR server sent JSON nested too deeply") from None
    except json_body.TooLarge:
        raise FhirUnavailable("the FHIR server sent too many JSON values in one answer") from None
    except ValueError:
        raise FhirUnavailable("the FHIR server sent malformed JSON") from None
    if remembered is None:  # only answers that parsed are remembered
        ANSWERS.put(key, body, config.fhir_cache_seconds, config.fhir_cache_max_bytes)
    return value


def _download(server: FhirServer, url: str, budget: CallBudget, config: Settings) -> bytes:
    remaining = budget.seconds_left()
    if remaining <= 0:
        raise FhirUnavailable(LATE)
    timeout = min(config.fhir_call_timeout_seconds, remaining)
    headers = {"Accept": "application/fhir+json"}
    if server.access_token:
        headers["Authorization"] = f"Bearer {server.access_token}"
    request = requests.PreparedRequest()
    try:
        request.prepare(method="GET", url=url, headers=headers)
        # Redirects are not followed: the token must not travel to wherever they point.
        with _adapter().send(
            request,
            stream=True,
            timeout=timeout,
            verify=_verify(),
            proxies=_proxies(server.base_url),
        ) as response:
            if problem := _status_problem(response.status_code):
                raise FhirUnavailable(problem, response.status_code)
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if media_type not in FHIR_JSON_TYPES:
                raise FhirUnavailable("the FHIR server did not answer with FHIR JSON")
            return _read_body(response, config.fhir_max_response_bytes, budget)
    # `from None`: requests' messages contain the URL, hence the patient id.
    except requests.Timeout:
        raise FhirUnavailable(LATE) from None
    except requests.RequestException:
        raise FhirUnavailable("the FHIR server could not be reached") from None


Handler = Callable[[Any], None]


class FetchRound:
    """The FHIR calls of one hook call, all in flight at once.

    Each answer is handed to its handler in the caller's thread as soon as it arrives, and a
    handler may submit follow-up calls (a next page, a referenced Medication), which start at
    once: no call waits for an unrelated one. At most `fhir_max_concurrent_calls` are out at a
    time; more wait their turn. At the budget's deadline the calls still out are abandoned
    (their own timeouts are capped by the same deadline) and their handlers, and those of the
    calls not started, get FhirUnavailable. A handler receives either the call's result or a
    FhirUnavailable. An abandoned call is stopped: its connections are shut down and, in a
    gevent worker, its greenlet killed, so nothing of it outlives the hook call."""

    def __init__(self, budget: CallBudget, config: Settings) -> None:
        self.budget = budget
        self._max_calls = config.fhir_max_concurrent_calls
        self._not_started: deque[tuple[Callable[[], Any], Handler]] = deque()
        self._out: dict[int, Handler] = {}
        self._numbers = count()
        self._answers: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._threads: ThreadPoolExecutor | None = None
        # Per call out: the connections it has used, and its greenlet (gevent workers).
        self._connections: dict[int, _CallConnections] = {}
        self._greenlets: dict[int, gevent.Greenlet] = {}

    def submit(self, call: Callable[[], Any], handle: Handler) -> None:
        self._not_started.append((call, handle))
        self._start_calls()

    def _start_calls(self) -> None:
        while self._not_started and len(self._out) < self._max_calls:
            call, handle = self._not_started.popleft()
            number = next(self._numbers)
            self._out[number] = handle
            self._connections[number] = _CallConnections()
            self._start(number, partial(self._answer, number, call))

    def _start(self, number: int, task: Callable[[], None]) -> None:
        if _greenlets():
            # A gevent worker: a greenlet costs a fraction of a (patched) thread pool's work.
            self._greenlets[number] = gevent.spawn(task)
            return
        if self._threads is None:
            # Per hook call, so one call's queries never queue behind another call's.
            self._threads = ThreadPoolExecutor(self._max_calls, thread_name_prefix="fhir")
        self._threads.submit(task)

    def _answer(self, number: int, call: Callable[[], Any]) -> None:
        connections = self._connections.get(number)
        if connections is None:
            return  # abandoned before it started
        _CALL_CONNECTIONS.set(connections)
        try:
            outcome = call()
        except FhirUnavailable as error:
            outcome = error
        except Exception as error:  # a bug or an unforeseen FHIR shape
            # The type only: the message may hold data.
            logger.error("reading FHIR data failed: %s", type(error).__name__)
            outcome = FhirUnavailable("the FHIR data could not be read")
        self._answers.put((number, outcome))

    def run(self) -> None:
        """Hand every answer to its handler; returns when none is out or at the deadline."""
        try:
            while self._out:
                try:
                    number, outcome = self._answers.get(
                        timeout=max(0.0, self.budget.seconds_left())
                    )
                except queue.Empty:
                    break
                handle = self._out.pop(number)
                self._connections.pop(number, None)
                self._greenlets.pop(number, None)
                self._start_calls()
                handle(outcome)
        finally:
            late = [*self._out.values(), *(handle for _, handle in self._not_started)]
            self._out.clear()
            self._not_started.clear()
            self._stop_abandoned()
        for handle in late:
            handle(FhirUnavailable(LATE))

    def _stop_abandoned(self) -> None:
        """Stop the calls still out: their sockets are shut down (a thread or greenlet blocked
        reading returns at once with an error) and their greenlets killed; threads then end on
        their own, and no new one starts."""
        for call in self._connections.values():
            call.stop()
        self._connections.clear()
        if self._greenlets:
            gevent.killall(list(self._greenlets.values()), block=False)
            self._greenlets.clear()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)


def _greenlets() -> bool:
    """Whether gevent has patched this process (a gevent worker): calls run in greenlets."""
    return bool(monkey.is_module_patched("threading"))
