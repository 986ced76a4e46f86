"""How many FHIR resources one request may carry (prefetch Bundles and draft orders)."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.protocol.request import MAX_RESOURCES, BadRequest, parse_request

CONTEXT = {"userId": "Practitioner/1", "patientId": "p1"}


def bundle(entries: int) -> dict[str, Any]:
    wbc = {"resourceType": "Observation", "status": "final"}
    return {"resourceType": "Bundle", "entry": [{"resource": wbc}] * entries}


def patient_view(counts: int) -> dict[str, Any]:
    prefetch = {"patient": {"resourceType": "Patient", "id": "p1"}, "counts": bundle(counts)}
    return {"hook": "patient-view", "hookInstance": "h", "context": CONTEXT, "prefetch": prefetch}


@pytest.mark.parametrize("resources, accepted", [(9_999, True), (10_000, True), (10_001, False)])
def test_resource_limit_edges(resources, accepted):
    assert MAX_RESOURCES == 10_000
    body = patient_view(resources - 1)  # and the Patient
    if accepted:
        assert len(parse_request(body, "patient-view").prefetch["counts"]["entry"]) == resources - 1
    else:
        with pytest.raises(BadRequest, match="more than 10000 FHIR resources") as refused:
            parse_request(body, "patient-view")
        assert refused.value.status == 413


def test_draft_orders_count_too():
    body = patient_view(MAX_RESOURCES - 2)
    drafts = bundle(2) | {"entry": [{"resource": {"resourceType": "MedicationRequest"}}] * 2}
    body |= {"hook": "order-sign", "context": CONTEXT | {"draftOrders": drafts}}
    with pytest.raises(BadRequest, match="more than 10000") as refused:
        parse_request(body, "order-sign")
    assert refused.value.status == 413
