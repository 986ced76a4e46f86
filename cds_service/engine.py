"""One CDS call, end to end and free of HTTP: gather the data, build the PatientRecord, run
the service's rules, render the cards. The Flask layer and the CLI both call `evaluate`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from typing import Any

from cds_service.cards import render_card
from cds_service.fhir_data import gather
from cds_service.knowledge import Knowledge
from cds_service.protocol import HookRequest
from cds_service.record import PatientRecord, build_record
from cds_service.rules import evaluate_rules
from cds_service.rules.base import Finding
from cds_service.services import ServiceDefinition

_SUBJECT_FIELDS = ("subject", "patient")


@dataclass
class Evaluation:
    record: PatientRecord
    findings: list[Finding]
    cards: list[dict[str, Any]]
    # Per prefetch key: (what the prefetch held, the result), for the metrics.
    sources: dict[str, tuple[str, str]] = dataclass_field(default_factory=dict)


def _other_patient(resource: Mapping[str, Any], patient_id: str) -> bool:
    """True when a resource names a different patient than the one in context."""
    if resource.get("resourceType") == "Patient":
        return bool(resource.get("id")) and resource.get("id") != patient_id
    for field in _SUBJECT_FIELDS:
        reference = resource.get(field)
        if isinstance(reference, Mapping) and isinstance(reference.get("reference"), str):
            parts = reference["reference"].rstrip("/").split("/")
            if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] != patient_id:
                return True
    return False


def evaluate(
    service: ServiceDefinition,
    request: HookRequest,
    knowledge: Knowledge,
    config: Mapping[str, Any],
    now: datetime,
) -> Evaluation:
    data = gather(
        service.prefetch,
        request.context,
        request.prefetch,
        request.fhir_server,
        request.access_token,
        config,
    )
    resources = data.all_resources()
    mine = [r for r in resources if not _other_patient(r, request.patient_id)]
    unavailable = dict(data.unavailable)
    unavailable.update(
        {key: f"may be incomplete: {reason}" for key, reason in data.incomplete.items()}
    )
    if len(mine) != len(resources):
        # Another patient's data must never inform this patient's cards.
        unavailable["other-patient"] = (
            f"{len(resources) - len(mine)} resources for a different patient were ignored"
        )
    record = build_record(
        mine, request.patient_id, now, knowledge, unavailable, only_what_rules_read=True
    )
    findings = evaluate_rules(record, knowledge, service.hook, service.rules)
    cards = [render_card(f, request.patient_id, knowledge) for f in findings]
    return Evaluation(record, findings, cards, data.sources)
