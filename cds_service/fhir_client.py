"""Calls to the EHR's FHIR server: one pooled session and one small thread pool per process,
every call bounded in time and size, and the access token sent only to fhirServer's origin.

Failures become `FhirUnavailable` with a short reason that never contains a URL, a token or
patient data, because reasons end up in logs and in cards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import cache
from http.cookiejar import DefaultCookiePolicy
from time import monotonic
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter

from cds_service import fhir_links, json_body
from cds_service.config import is_development

logger = logging.getLogger(__name__)
# urllib3 logs each request line at DEBUG, and FHIR query strings hold patient ids.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

FHIR_JSON_TYPES = ("application/fhir+json", "application/json")
CHUNK_BYTES = 64 * 1024
LATE = "the FHIR server did not answer in time"

Key = TypeVar("Key")
Result = TypeVar("Result")


class FhirUnavailable(Exception):
    """FHIR data could not be obtained; the message is a reason safe to log and show."""


@dataclass(frozen=True)
class FhirServer:
    """The request's fhirServer and the token that may be sent to it (and only to it)."""

    base_url: str
    access_token: str | None

    def url(self, relative: str) -> str:
        return f"{self.base_url.rstrip('/')}/{relative}"

    def owns(self, url: str) -> bool:
        """Whether `url` is on fhirServer's origin, so the token may be sent there."""
        return fhir_links.same_origin(url, self.base_url)

    def __repr__(self) -> str:  # keeps the token out of reprs in logs and tracebacks
        return "FhirServer(<redacted>)"


def fhir_server_for(
    base_url: str | None, access_token: str | None, config: Mapping[str, Any]
) -> FhirServer:
    """The request's FHIR server if this service may call it, else FhirUnavailable."""
    if not base_url:
        raise FhirUnavailable("the request has no fhirServer")
    base_origin = fhir_links.base_origin(base_url)
    if base_origin is None:
        raise FhirUnavailable("fhirServer is not a plain http(s) URL")
    if base_origin.scheme == "http" and not is_development(config):
        raise FhirUnavailable("fhirServer must use https")
    if not access_token and not config["FHIR_ALLOW_UNAUTHENTICATED"]:
        raise FhirUnavailable("the request has no fhirAuthorization access token")
    return FhirServer(base_url, access_token or None)


@cache
def _session(pool_size: int) -> requests.Session:
    session = requests.Session()
    # One session serves every EHR and patient: no cookie may carry over between requests.
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@cache
def _executor(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fhir")


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


def _read_body(response: requests.Response, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FhirUnavailable(f"the FHIR response is larger than {max_bytes} bytes")
    body = bytearray()
    for chunk in response.iter_content(CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            raise FhirUnavailable(f"the FHIR response is larger than {max_bytes} bytes")
        if monotonic() > deadline:
            raise FhirUnavailable(LATE)
    return bytes(body)


def get_json(server: FhirServer, url: str, deadline: float, config: Mapping[str, Any]) -> Any:
    """GET a FHIR JSON document from fhirServer, timed for the metrics."""
    from cds_service.metrics import observe_fhir_fetch

    started = monotonic()
    try:
        value = _get_json(server, url, deadline, config)
    except FhirUnavailable:
        observe_fhir_fetch(monotonic() - started, ok=False)
        raise
    observe_fhir_fetch(monotonic() - started, ok=True)
    return value


def _get_json(server: FhirServer, url: str, deadline: float, config: Mapping[str, Any]) -> Any:
    """The JSON body of a GET on fhirServer, finished by `deadline` (a `monotonic()` time)."""
    if not server.owns(url):
        raise FhirUnavailable("a link points outside fhirServer; not followed")
    remaining = deadline - monotonic()
    if remaining <= 0:
        raise FhirUnavailable(LATE)
    timeout = min(config["FHIR_CALL_TIMEOUT_SECONDS"], remaining)
    headers = {"Accept": "application/fhir+json"}
    if server.access_token:
        headers["Authorization"] = f"Bearer {server.access_token}"
    session = _session(config["FHIR_MAX_CONCURRENT_CALLS"])
    try:
        # Redirects are not followed: the token must not travel to wherever they point.
        with session.get(
            url, headers=headers, timeout=timeout, stream=True, allow_redirects=False
        ) as response:
            if problem := _status_problem(response.status_code):
                raise FhirUnavailable(problem)
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if media_type not in FHIR_JSON_TYPES:
                raise FhirUnavailable("the FHIR server did not answer with FHIR JSON")
            body = _read_body(response, config["FHIR_MAX_RESPONSE_BYTES"], deadline)
    # `from None`: requests' messages contain the URL, hence the patient id.
    except requests.Timeout:
        raise FhirUnavailable(LATE) from None
    except requests.RequestException:
        raise FhirUnavailable("the FHIR server could not be reached") from None
    try:
        return json_body.loads(body)
    except json_body.TooDeep:
        raise FhirUnavailable("the FHIR server sent JSON nested too deeply") from None
    except ValueError:
        raise FhirUnavailable("the FHIR server sent malformed JSON") from None


def run_concurrently(
    tasks: Mapping[Key, Callable[[], Result]], deadline: float, config: Mapping[str, Any]
) -> dict[Key, Result | FhirUnavailable]:
    """Each task's result, or FhirUnavailable for tasks that failed or missed the deadline.

    Late tasks are abandoned, not awaited; their own calls stop soon after, because every
    call's timeout is capped by the same deadline."""
    executor = _executor(config["FHIR_MAX_CONCURRENT_CALLS"])
    futures = {executor.submit(task): key for key, task in tasks.items()}
    done, pending = wait(futures, timeout=max(0.0, deadline - monotonic()))
    results: dict[Key, Result | FhirUnavailable] = {}
    for future in pending:
        future.cancel()
        results[futures[future]] = FhirUnavailable(LATE)
    for future in done:
        if (error := future.exception()) is None:
            results[futures[future]] = future.result()
        elif isinstance(error, FhirUnavailable):
            results[futures[future]] = error
        else:
            # A bug or an unforeseen FHIR shape: the type only, the message may hold data.
            logger.error("reading FHIR data failed: %s", type(error).__name__)
            results[futures[future]] = FhirUnavailable("the FHIR data could not be read")
    return results
