"""Prometheus metrics and the /healthz, /readyz and /metrics endpoints.

Under gunicorn every worker is a process: with PROMETHEUS_MULTIPROC_DIR set (the production
server sets it) the metrics are written to files there and /metrics adds up all workers.
Labels hold only bounded, non-patient values: service ids, hooks, rule ids, prefetch keys.
None of these endpoints needs the CDS client JWT (security guards /cds-services only); put
/metrics behind the proxy's allow-list (docs/deploy.md).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from flask import Blueprint, Flask, Response, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import Engine, text

log = logging.getLogger(__name__)

# Hook calls answer within ~500 ms or the EHR gives up; buckets resolve the fast end.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)

HOOK_LATENCY = Histogram(
    "cds_hook_request_duration_seconds",
    "Time to answer a CDS Hooks service call, by service, hook and HTTP status.",
    ["service", "hook", "status"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "cds_http_requests_total", "HTTP requests by endpoint and status.", ["endpoint", "status"]
)
CARDS = Counter("cds_cards_total", "Cards returned, by rule and indicator.", ["rule", "indicator"])
CARDS_SUPPRESSED = Counter(
    "cds_cards_suppressed_total", "Cards held back by a snooze, by rule.", ["rule"]
)
STORAGE_EVENTS = Counter(
    "cds_storage_events_total",
    "Card history and snooze events (cards_recorded, cards_lost, snooze_check_failures).",
    ["event"],
)
PREFETCH = Counter(
    "cds_prefetch_keys_total",
    "Prefetch keys by what the request held (present, null, absent, unusable) and the result "
    "(used, fetched, unavailable).",
    ["service", "key", "prefetch", "result"],
)
FHIR_FETCH = Histogram(
    "cds_fhir_fetch_duration_seconds",
    "Calls to the EHR's FHIR server, by outcome (ok, unavailable).",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
AUTH_FAILURES = Counter(
    "cds_auth_failures_total",
    "CDS client JWTs refused (auth_rejected) or not checkable (auth_error).",
    ["event"],
)
VALIDATIONS = Counter(
    "cds_fhir_validations_total",
    "FHIR resources validated, by verdict cache outcome (hit, miss, off): a low hit share "
    "with many repeat patients means CDS_VALIDATION_CACHE_SIZE is too small.",
    ["cache"],
)
ADMIN_LOGIN_FAILURES = Counter(
    "cds_admin_login_failures_total",
    "Failed logins to the /admin/ dashboard (wrong user or password).",
)
FEEDBACK = Counter(
    "cds_feedback_total", "Feedback items stored, by outcome (accepted, overridden).", ["outcome"]
)

_FEEDBACK_OUTCOMES = {"accepted", "overridden"}
_AUTH_EVENTS = {"auth_rejected", "auth_error"}


def observe_cards(cards: Iterable[Mapping[str, Any]]) -> None:
    for card in cards:
        topic = (card.get("source") or {}).get("topic") or {}
        CARDS.labels(str(topic.get("code") or "unknown"), str(card.get("indicator"))).inc()


def observe_prefetch(service_id: str, sources: Mapping[str, tuple[str, str]]) -> None:
    for key, (prefetch, result) in sources.items():
        PREFETCH.labels(service_id, key, prefetch, result).inc()


def observe_validations(counts: Mapping[str, int]) -> None:
    for outcome, amount in counts.items():
        if amount:
            VALIDATIONS.labels(outcome).inc(amount)


def observe_fhir_fetch(seconds: float, ok: bool) -> None:
    FHIR_FETCH.labels("ok" if ok else "unavailable").observe(seconds)


def observe_storage_event(name: str, amount: int) -> None:
    prefix = "cards_suppressed."
    if name.startswith(prefix):
        CARDS_SUPPRESSED.labels(name[len(prefix) :]).inc(amount)
    elif name != "cards_suppressed":
        STORAGE_EVENTS.labels(name).inc(amount)


class _AuthFailureCounter(logging.Filter):
    """Counts the security module's refusal log records; it lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        event = getattr(record, "event", None)
        if event in _AUTH_EVENTS:
            AUTH_FAILURES.labels(event).inc()
        return True


class HookService(Protocol):
    """A CDS service as the hook latency labels name it."""

    @property
    def id(self) -> str: ...

    @property
    def hook(self) -> str: ...


# Per dependency of a hook call, by the reason /readyz gives when it fails: a check that
# returns when the dependency answers and raises when it does not.
Readiness = Mapping[str, Callable[[], object]]


def database_answers(engine: Engine) -> None:
    """Raises unless the database answers a trivial query."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _health_blueprint(readiness: Readiness) -> Blueprint:
    blueprint = Blueprint("health", __name__)

    @blueprint.get("/healthz")
    def healthz() -> Response:
        """Liveness: the process answers."""
        return jsonify({"status": "ok"})

    @blueprint.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """Readiness: every dependency of a hook call answers: the database, and the JWT
        replay cache (Redis when configured), without which every call with a JWT gets 503."""
        for reason, check in readiness.items():
            try:
                check()
            except Exception as error:  # any failure means "not ready"; the class name is enough
                log.warning("readiness: %s (%s)", reason, type(error).__name__)
                return jsonify({"status": "unavailable", "reason": reason}), 503
        return jsonify({"status": "ok"}), 200

    @blueprint.get("/metrics")
    def metrics() -> Response:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        try:
            text = generate_latest(registry)
        except FileNotFoundError:
            # The master folded a dead worker's file into the archive while this scrape was
            # reading the folder (ops/metrics_files.py): read it again.
            text = generate_latest(registry)
        return Response(text, mimetype=CONTENT_TYPE_LATEST)

    return blueprint


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _request_recorder(services: Mapping[str, HookService]) -> Callable[[Response], Response]:
    def record_request(response: Response) -> Response:
        endpoint = request.endpoint or "unmatched"
        HTTP_REQUESTS.labels(endpoint, str(response.status_code)).inc()
        view_args = request.view_args or {}
        if endpoint == "cds_hooks.call_service":
            service = services.get(view_args.get("service_id", ""))
            if service is not None and "metrics_started" in g:
                HOOK_LATENCY.labels(service.id, service.hook, str(response.status_code)).observe(
                    time.perf_counter() - g.metrics_started
                )
        elif endpoint == "cds_feedback.receive_feedback" and response.status_code == 200:
            # The outcomes the view parsed and stored (the body is read once, by the strict
            # reader).
            for outcome in g.get("feedback_outcomes", ()):
                if outcome in _FEEDBACK_OUTCOMES:
                    FEEDBACK.labels(outcome).inc()
        return response

    return record_request


def init_app(app: Flask, services: Mapping[str, HookService], readiness: Readiness) -> None:
    """Health and metrics endpoints (/readyz runs the `readiness` checks in order), the hook
    latency of `services`, request metrics, and the count of refused CDS client JWTs."""
    app.register_blueprint(_health_blueprint(readiness))
    app.before_request(_start_timer)
    app.after_request(_request_recorder(services))
    security_log = logging.getLogger("cds_service.security.flask_integration")
    if not any(isinstance(f, _AuthFailureCounter) for f in security_log.filters):
        security_log.addFilter(_AuthFailureCounter())
