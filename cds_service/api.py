"""HTTP: the CDS Hooks discovery and service endpoints (a Flask blueprint).

Only protocol concerns live here: content type, JSON parsing, status codes, logging. Clinical
decisions are made in the engine; data gathering in fhir_data.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from cds_service import json_body, metrics, validation
from cds_service.engine import evaluate
from cds_service.fhir_data import PreconditionFailed
from cds_service.protocol import BadRequest, parse_request

log = logging.getLogger("cds_service.api")
blueprint = Blueprint("cds_hooks", __name__)


def error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


def _read_json() -> Any:
    mimetype = request.mimetype or ""
    if not (mimetype == "application/json" or mimetype.endswith("+json")):
        raise BadRequest("Content-Type must be application/json", status=415)
    try:
        return json_body.loads_request_body(request.get_data(cache=False))
    except json_body.BodyRefused as exc:
        raise BadRequest(str(exc)) from exc


@blueprint.get("/cds-services")
def discovery() -> Response:
    services = current_app.extensions["cds_services"]
    return jsonify({"services": [s.discovery_entry() for s in services.values()]})


@blueprint.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    services = current_app.extensions["cds_services"]
    service = services.get(service_id)
    if service is None:
        return error(404, "unknown CDS service")
    started = time.perf_counter()
    try:
        hook_request = parse_request(_read_json(), service.hook)
    except BadRequest as exc:
        log.info(
            "rejected request",
            extra={"service": service_id, "status": exc.status, "reason": str(exc)},
        )
        return error(exc.status, str(exc))
    knowledge = current_app.extensions["cds_knowledge"]
    try:
        result = evaluate(service, hook_request, knowledge, current_app.config, datetime.now(UTC))
    except PreconditionFailed as exc:
        log.info(
            "precondition failed",
            extra={
                "service": service_id,
                "hook_instance": hook_request.correlation_id,
                "reason": str(exc),
            },
        )
        return error(412, f"required FHIR data is unavailable: {exc}")
    storage = current_app.extensions["cds_storage"]
    cards, suppressed = storage.filter_snoozed(result.cards, service.id, hook_request.patient_id)
    metrics.observe_cards(cards)
    metrics.observe_prefetch(service.id, result.sources)
    metrics.observe_validations(validation.take_counts())
    storage.record_cards(
        service.id,
        service.hook,
        hook_request.hook_instance,
        hook_request.patient_id,
        cards,
        knowledge.version,
    )
    log.info(
        "answered",
        extra={
            "service": service_id,
            "hook_instance": hook_request.correlation_id,
            "cards": [card["source"]["topic"]["code"] for card in cards],
            "suppressed": len(suppressed),
            "ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return jsonify({"cards": cards})
