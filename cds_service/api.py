"""HTTP: the CDS Hooks discovery and service endpoints (a Flask blueprint).

Only protocol concerns live here: content type, JSON parsing, status codes, logging. Clinical
decisions are made in the engine; data gathering in fhir.gather.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from cds_service.config import Settings
from cds_service.deadline import Deadline, DeadlinePassed
from cds_service.engine import evaluate
from cds_service.fhir import links as fhir_links
from cds_service.fhir import validation
from cds_service.fhir.gather import PreconditionFailed
from cds_service.fhir.targets import refused_in_development
from cds_service.ops import memory, metrics
from cds_service.protocol import json_body
from cds_service.protocol.request import BadRequest, HookRequest, parse_request
from cds_service.runtime import runtime

log = logging.getLogger("cds_service.api")
blueprint = Blueprint("cds_hooks", __name__)
UNAVAILABLE = "required FHIR data is unavailable"


def error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


def _refused_fhir_server(
    service_id: str, hook_request: HookRequest, settings: Settings
) -> Response | None:
    """412 when the authenticated client's settings do not allow its fhirServer, so that the
    service cannot be pointed at arbitrary hosts (CDS_TRUSTED_ISSUERS `fhir_servers`); in
    development, also when fhirServer is on a private or link-local address (fhir/targets.py)."""
    client = g.get("cds_client")
    if hook_request.fhir_server and settings.development:
        allowed = settings.fhir_allow_private_hosts
        if reason := refused_in_development(hook_request.fhir_server, allowed):
            log.warning("fhirServer refused", extra={"service": service_id, "reason": reason})
            return error(412, f"{UNAVAILABLE}: {reason}")
    if not hook_request.fhir_server or client is None:
        return None
    issuer = settings.trusted_issuers[client.issuer]
    if fhir_links.fhir_server_allowed(hook_request.fhir_server, issuer, client.tenant):
        return None
    log.warning(
        "fhirServer not allowed for this client",
        extra={
            "service": service_id,
            "hook_instance": hook_request.correlation_id,
            "iss": client.issuer,
            "tenant": client.tenant,
            "fhir_server_origin": fhir_links.origin_text(hook_request.fhir_server),
        },
    )
    return error(412, UNAVAILABLE)


def _read_json(settings: Settings) -> tuple[Any, Deadline]:
    """The body's JSON, and the call's deadline, counted from when the body has arrived (a
    client sending slowly holds only its own greenlet while it does)."""
    mimetype = request.mimetype or ""
    if not (mimetype == "application/json" or mimetype.endswith("+json")):
        raise BadRequest("Content-Type must be application/json", status=415)
    raw = request.get_data(cache=False)
    deadline = Deadline.starting_now(settings.fhir_deadline_seconds)
    try:
        return json_body.loads_request_body(raw), deadline
    except json_body.BodyRefused as exc:
        raise BadRequest(str(exc), exc.status) from exc


@blueprint.after_request
def _release_memory(response: Response) -> Response:
    # Once the answer is sent, when the call's parsed body and record are long freed.
    if request.method == "POST" and memory.is_large(request.content_length):
        response.call_on_close(memory.release)
    return response


@blueprint.get("/cds-services")
def discovery() -> Response:
    services = runtime().services
    return jsonify({"services": [s.discovery_entry() for s in services.values()]})


@blueprint.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    running = runtime()
    service = running.services.get(service_id)
    if service is None:
        return error(404, "unknown CDS service")
    started = time.perf_counter()
    try:
        body, deadline = _read_json(running.settings)
        hook_request = parse_request(body, service.hook)
    except BadRequest as exc:
        log.info(
            "rejected request",
            extra={"service": service_id, "status": exc.status, "reason": str(exc)},
        )
        return error(exc.status, str(exc))
    if refusal := _refused_fhir_server(service_id, hook_request, running.settings):
        return refusal
    storage = running.storage

    def snoozed(rule_ids: frozenset[str]) -> set[str]:
        return set(storage.snoozed_rules(service.id, hook_request.patient_id, rule_ids))

    try:
        result = evaluate(
            service,
            hook_request,
            running.knowledge,
            running.settings,
            datetime.now(UTC),
            snoozed,
            deadline=deadline,
            observe_fetch=running.observe_fhir_fetch,
        )
    except DeadlinePassed as exc:
        # Not the client's fault as such (a loaded worker, a slow FHIR server and a large
        # chart together): it may try again; no partial answer, whose missing cards could be
        # read as "nothing to report".
        log.warning(
            "deadline passed",
            extra={
                "service": service_id,
                "hook_instance": hook_request.correlation_id,
                "stage": str(exc),
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return error(503, "the call could not be evaluated within its deadline")
    except PreconditionFailed as exc:
        log.info(
            "precondition failed",
            extra={
                "service": service_id,
                "hook_instance": hook_request.correlation_id,
                "reason": str(exc),
            },
        )
        # Production callers get no detail: "could not be reached", "HTTP 302" or "401" would
        # tell them what answers at a host and port they chose (the log has the reason).
        if running.settings.development:
            return error(412, f"{UNAVAILABLE}: {exc}")
        return error(412, UNAVAILABLE)
    cards, answer = result.cards, result.answer
    storage.count_snoozed(service.id, [finding.rule for finding in answer.snoozed])
    metrics.observe_cards(cards)
    metrics.observe_prefetch(service.id, result.sources)
    metrics.observe_validations(validation.take_counts())
    storage.record_cards(
        service.id,
        service.hook,
        hook_request.hook_instance,
        hook_request.patient_id,
        cards,
        running.knowledge.version,
        silent=[(finding.rule, finding.indicator) for finding in answer.silent],
        all_live=answer.all_live,
        in_scope=result.in_scope,
    )
    log.info(
        "answered",
        extra={
            "service": service_id,
            "hook_instance": hook_request.correlation_id,
            "cards": [card["source"]["topic"]["code"] for card in cards],
            "suppressed": len(answer.snoozed),
            "silent": [finding.rule for finding in answer.silent],
            "ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return jsonify({"cards": cards})
