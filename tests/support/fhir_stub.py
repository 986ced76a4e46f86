"""A small FHIR R4 server for tests, over real HTTP on 127.0.0.1.

It serves resources from Synthea transaction Bundles (their `urn:uuid:` references rewritten to
`Type/id`, as a real server stores them): reads (`Type/id`) and searches by `patient`/`subject`,
`code` (token list, `system|code` or `code`), `_id`, `_sort=-date`, `_count` and
`_include=<Type>:medication`, with `next` links for paging. It checks a Bearer token when given
one, can answer slowly or trickle its answers a byte at a time (counting the answers still
trickling, to see whether a client stopped reading), records the calls it received and counts
the most it served at once.

It runs on aiohttp in one event loop (a thread of the test process): a slow answer is a timer,
not a thread, so the server costs the benchmark's shared cores little besides the HTTP exchange
itself, as a real FHIR server on its own machine would cost them nothing.

In a test:   with FhirStub(load_bundle(path), token="t") as stub: ... stub.base_url ...
As a process: python -m tests.support.fhir_stub --port 8081 --token t BUNDLE.json [...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

BASE_PATH = "/fhir"
DATE_FIELDS = ("effectiveDateTime", "issued", "authoredOn", "onsetDateTime", "recordedDate")
DEFAULT_PAGE_SIZE = 50


def _rewrite_references(value: Any, references: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            key: references.get(item, item)
            if key == "reference" and isinstance(item, str)
            else _rewrite_references(item, references)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rewrite_references(item, references) for item in value]
    return value


def load_bundle(path: str | Path) -> list[dict[str, Any]]:
    """The resources of a Synthea transaction Bundle, with references made `Type/id`."""
    bundle = json.loads(Path(path).read_text())
    references = {
        entry["fullUrl"]: f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
        for entry in bundle["entry"]
    }
    return [_rewrite_references(entry["resource"], references) for entry in bundle["entry"]]


def served_resources(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources of a request's prefetch, as a FHIR server would store them."""
    resources = []
    for value in (request.get("prefetch") or {}).values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            resources += [e["resource"] for e in value.get("entry") or [] if "resource" in e]
        elif isinstance(value, dict):
            resources.append(value)
    return resources


@dataclass(frozen=True)
class RecordedCall:
    path_and_query: str
    authorization: str | None
    accept: str | None


def _outcome(status: int, text: str) -> tuple[int, dict[str, Any]]:
    issue = {"severity": "error", "code": "processing", "diagnostics": text}
    return status, {"resourceType": "OperationOutcome", "issue": [issue]}


def _matches_patient(resource: dict[str, Any], patient: str) -> bool:
    wanted = patient if "/" in patient else f"Patient/{patient}"
    if resource["resourceType"] == "Patient":
        return f"Patient/{resource['id']}" == wanted
    return any(
        (resource.get(field) or {}).get("reference") == wanted for field in ("subject", "patient")
    )


def _matches_code(resource: dict[str, Any], tokens: str) -> bool:
    codings = (resource.get("code") or {}).get("coding") or []
    for token in tokens.split(","):
        system, _, code = token.rpartition("|")
        for coding in codings:
            if coding.get("code") == code and (not system or coding.get("system") == system):
                return True
    return False


def _date(resource: dict[str, Any]) -> str:
    return next((resource[name] for name in DATE_FIELDS if name in resource), "")


class FhirStub:
    def __init__(
        self,
        resources: Iterable[dict[str, Any]],
        token: str | None = None,
        delay_seconds: float = 0.0,
        port: int = 0,
        later_pages_delay_seconds: float = 0.0,
        delay_by_type: dict[str, float] | None = None,
        supports_include: bool = True,
        max_page_size: int = 1000,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.resources = list(resources)
        # Seconds before answering a search or read of a resource type (else delay_seconds).
        self.delay_by_type = delay_by_type or {}
        self.supports_include = supports_include
        self.max_page_size = max_page_size  # a larger `_count` is capped, as servers do
        # Paths of the calls answered, in the order their answers were sent.
        self.answered: list[str] = []
        # Benchmarks: compute each distinct query's answer once (the data never changes).
        self.cache_answers = False
        # Deadline tests: seconds between the bytes of an answer (0: sent at once), and the
        # answers still being sent.
        self.trickle_seconds = 0.0
        self.trickling = 0
        self._answers: dict[str, tuple[int, bytes]] = {}
        self.token = token
        self.delay_seconds = delay_seconds
        self.later_pages_delay_seconds = later_pages_delay_seconds
        self.calls: list[RecordedCall] = []
        # The client ends (address, port) of the connections that carried calls: over TLS
        # each is one handshake, so the benchmark shows how rarely pooling makes one.
        self.connections: set[Any] = set()
        self.max_in_flight = 0
        self._in_flight = 0
        self._ssl_context = ssl_context  # HTTPS when given (tests/support/tls.py)
        # Bound now, so that base_url is known before the server starts.
        self._socket = socket.create_server(("127.0.0.1", port), backlog=256)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self._socket.getsockname()[1]}{BASE_PATH}"

    @property
    def thread_id(self) -> int | None:
        """The serving thread's id for the operating system (its CPU time is the server's)."""
        return self._thread.native_id

    def serve_forever(self) -> None:
        """Serve in this thread until the stub is closed (__exit__)."""
        asyncio.set_event_loop(self._loop)
        application = web.Application()
        application.router.add_get("/{path:.*}", self._handle)
        runner = web.AppRunner(application, access_log=None, handle_signals=False)
        self._loop.run_until_complete(runner.setup())
        site = web.SockSite(runner, self._socket, ssl_context=self._ssl_context)
        self._loop.run_until_complete(site.start())
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()

    def __enter__(self) -> FhirStub:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._socket.close()

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        parts = path.removeprefix(BASE_PATH).strip("/").split("/")
        if len(parts) == 2:
            found = [r for r in self.resources if [r["resourceType"], r["id"]] == parts]
            return (200, found[0]) if found else _outcome(404, "not found")
        if len(parts) == 1 and parts[0]:
            return 200, self._search(parts[0], query)
        return _outcome(400, "unsupported interaction")

    def _search(self, resource_type: str, query: dict[str, str]) -> dict[str, Any]:
        matches = [r for r in self.resources if r["resourceType"] == resource_type]
        if patient := query.get("patient") or query.get("subject"):
            matches = [r for r in matches if _matches_patient(r, patient)]
        if codes := query.get("code"):
            matches = [r for r in matches if _matches_code(r, codes)]
        if ids := query.get("_id"):
            matches = [r for r in matches if r["id"] in ids.split(",")]
        if query.get("_sort") == "-date":
            matches.sort(key=_date, reverse=True)
        count = min(int(query.get("_count", DEFAULT_PAGE_SIZE)), self.max_page_size)
        offset = int(query.get("_offset", 0))
        page = matches[offset : offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in page]
            + [
                {"resource": r, "search": {"mode": "include"}}
                for r in self._included(resource_type, query.get("_include"), page)
            ],
        }
        if offset + count < len(matches):
            next_query = urlencode({**query, "_offset": offset + count})
            bundle["link"] = [
                {"relation": "next", "url": f"{self.base_url}/{resource_type}?{next_query}"}
            ]
        return bundle

    @staticmethod
    def encoded(status: int, body: dict[str, Any]) -> tuple[int, bytes]:
        return status, json.dumps(body).encode()

    def _included(
        self, resource_type: str, include: str | None, page: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if not self.supports_include or include != f"{resource_type}:medication":
            return []
        wanted = {(r.get("medicationReference") or {}).get("reference") for r in page}
        return [
            r
            for r in self.resources
            if r["resourceType"] == "Medication" and f"Medication/{r['id']}" in wanted
        ]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(
            RecordedCall(
                request.raw_path,
                request.headers.get("Authorization"),
                request.headers.get("Accept"),
            )
        )
        if request.transport is not None:
            self.connections.add(request.transport.get_extra_info("peername"))
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await self._respond(request)
        finally:
            self._in_flight -= 1

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        # As parse_qs: the last value of a repeated parameter, blank values dropped.
        query = {name: value for name, value in request.query.items() if value}
        later_page = "_offset" in query
        resource_type = request.path.removeprefix(BASE_PATH).strip("/").split("/")[0]
        delay = self.delay_by_type.get(resource_type, self.delay_seconds)
        await asyncio.sleep(self.later_pages_delay_seconds if later_page else delay)
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            status, payload = self.encoded(*_outcome(401, "unauthorized"))
        elif self.cache_answers and request.raw_path in self._answers:
            status, payload = self._answers[request.raw_path]
        else:
            status, payload = self.encoded(*self.answer(request.path, query))
            if self.cache_answers:
                self._answers[request.raw_path] = status, payload
        if self.trickle_seconds:
            return await self._trickle(request, status, payload)
        response = web.Response(status=status, body=payload, content_type="application/fhir+json")
        try:
            await response.prepare(request)
            await response.write_eof()
            self.answered.append(request.path)
        except ConnectionError:
            pass  # the client gave up waiting (deadline tests)
        return response

    async def _trickle(
        self, request: web.Request, status: int, payload: bytes
    ) -> web.StreamResponse:
        """The whole answer, status line and headers included, one byte at a time, until it is
        sent or the client closes the connection (written to the transport directly: a client
        waiting for the headers has no read deadline to stop it, only the caller's)."""
        head = (
            f"HTTP/1.1 {status} OK\r\nContent-Type: application/fhir+json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        ).encode()
        transport = request.transport
        self.trickling += 1
        try:
            for byte in head + payload:
                if transport is None or transport.is_closing():
                    break  # the client closed the connection: what the deadline tests look for
                transport.write(bytes([byte]))
                await asyncio.sleep(self.trickle_seconds)
            else:
                self.answered.append(request.path)
        finally:
            self.trickling -= 1
            if transport is not None:
                transport.close()
        # The answer was written by hand: nothing more to send on the closed connection.
        raise web.HTTPException()


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", help="Synthea transaction Bundle files")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", help="Bearer token to require")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    resources = [r for path in args.bundles for r in load_bundle(path)]
    stub = FhirStub(resources, token=args.token, delay_seconds=args.delay, port=args.port)
    print(f"FHIR stub serving {len(resources)} resources at {stub.base_url}", flush=True)
    stub.serve_forever()


if __name__ == "__main__":
    _main()
