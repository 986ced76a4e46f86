"""`POST /cds-services/<service_id>/feedback` (CDS Hooks 2.0 §feedback).

The spec does not define the response; we answer 200 `{}` once stored, 400 with the broken
rule, 404 for a service we do not offer and 503 when the database cannot take it (retryable).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from cds_service.governance.feedback import FeedbackError, parse_feedback
from cds_service.governance.store import Storage
from cds_service.protocol import json_body

log = logging.getLogger(__name__)


def feedback_blueprint(storage: Storage, service_ids: Callable[[], Collection[str]]) -> Blueprint:
    blueprint = Blueprint("cds_feedback", __name__)

    @blueprint.post("/cds-services/<service_id>/feedback")
    def receive_feedback(service_id: str) -> tuple[Response, int]:
        if service_id not in service_ids():
            return jsonify(error=f"no CDS service with id {service_id!r}"), 404
        try:
            body = json_body.loads_request_body(request.get_data(cache=False))
        except json_body.BodyRefused as error:
            return jsonify(error=str(error)), error.status
        try:
            items = parse_feedback(body)
        except FeedbackError as error:
            return jsonify(error=str(error)), 400
        try:
            storage.store_feedback(service_id, items)
        except SQLAlchemyError as error:
            log.error("feedback not stored (%s)", type(error).__name__)
            return jsonify(error="feedback could not be stored now; please retry"), 503
        g.feedback_outcomes = [item.outcome for item in items]  # for the metrics
        return jsonify({}), 200

    return blueprint
