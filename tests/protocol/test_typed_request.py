"""The request is read once into a typed HookRequest: the patient, the user, the encounter and
the order hooks' draft orders (with order-select's selections); the engine reads them from
there, never from the request's JSON again."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from cds_service.config import load_config
from cds_service.engine import evaluate
from cds_service.knowledge import load_knowledge
from cds_service.protocol.draft_orders import read_draft_orders
from cds_service.protocol.request import parse_request
from cds_service.services import load_services
from tests.support.scenarios import order_scenarios, request_of

CONTEXT = {"userId": "Practitioner/7", "patientId": "p1", "encounterId": "e9"}
DRAFT = {"resourceType": "MedicationRequest", "id": "aza", "status": "draft", "intent": "order"}
MEDICATION = {"resourceType": "Medication", "id": "m1"}
OUTCOME = {"resourceType": "OperationOutcome", "issue": []}


def order_request(hook: str, **context: Any) -> dict[str, Any]:
    entries = [{"resource": DRAFT}, {}, {"resource": MEDICATION}, {"resource": OUTCOME}]
    drafts = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return {
        "hook": hook,
        "hookInstance": "h",
        "context": {**CONTEXT, "draftOrders": drafts, **context},
        "prefetch": {},
    }


def test_the_context_is_read_into_typed_fields() -> None:
    body = {"hook": "patient-view", "hookInstance": "h", "context": CONTEXT}
    request = parse_request(body, "patient-view")
    assert (request.patient_id, request.user_id, request.encounter_id) == (
        "p1",
        "Practitioner/7",
        "e9",
    )
    assert request.drafts is None  # patient-view carries no draft orders


def test_order_select_drafts_are_read_once_with_their_selections() -> None:
    body = order_request("order-select", selections=["MedicationRequest/aza"])
    drafts = parse_request(body, "order-select").drafts
    assert drafts is not None
    assert drafts.entries == (DRAFT, None, MEDICATION, OUTCOME)  # every position, in order
    assert drafts.selections == ("MedicationRequest/aza",)
    assert drafts.resources == [DRAFT, MEDICATION]  # what gathering resolves Medications for
    assert drafts.medications == [MEDICATION]


def test_order_sign_evaluates_every_draft_whatever_the_context_says() -> None:
    body = order_request("order-sign", selections=["MedicationRequest/other"])
    drafts = parse_request(body, "order-sign").drafts
    assert drafts is not None and drafts.selections is None


def test_a_bundle_without_entries_has_no_drafts() -> None:
    assert read_draft_orders({"resourceType": "Bundle"}, None).entries == ()


def test_the_engine_reads_the_drafts_and_the_patient_from_the_typed_request() -> None:
    scenario = next(s for s in order_scenarios() if s["hook"] == "order-sign" and s["expected"])
    service = load_services()[f"leukopenia-{scenario['hook']}"]
    request = parse_request(request_of(scenario), service.hook)
    # The raw context keeps only what the prefetch templates may name: were the engine to read
    # the drafts or the patient from the JSON again, it would find none.
    tokens_only = {key: value for key, value in request.context.items() if key != "draftOrders"}
    request = dataclasses.replace(request, context=tokens_only)
    config, knowledge = load_config({"ENV": "testing"}), load_knowledge()
    result = evaluate(service, request, knowledge, config, datetime.now(UTC))
    assert result.record.patient_id == request.patient_id
    assert result.record.draft_orders, "the drafts read with the request"
    fired = {card["source"]["topic"]["code"] for card in result.cards}
    assert {expected["rule"] for expected in scenario["expected"]} <= fired
