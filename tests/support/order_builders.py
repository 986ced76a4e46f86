"""Small FHIR builders for the order-rule unit tests (raw JSON, as the EHR sends it): counts by
analyte name, dosages, draft MedicationRequests, and the order-sign rules run on a record. The
clock, patient and code systems are those of builders.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cds_service.knowledge import load_knowledge
from cds_service.protocol.draft_orders import read_draft_orders
from cds_service.record import PatientRecord, build_record
from cds_service.rules import evaluate_rules
from cds_service.services import load_services
from tests.support.builders import NOW, PATIENT, RXNORM

KNOWLEDGE = load_knowledge()
# The rules the order-sign service runs, as its definition in hooks/ declares them.
ORDER_RULES = load_services()["leukopenia-order-sign"].rules
LOINC_CODES = {"wbc": "6690-2", "anc": "751-8", "alc": "731-0", "temp": "8310-5"}
# A documented Duffy-null phenotype, in the site code the default clinical settings read.
DUFFY_NULL = {
    "resourceType": "Observation",
    "id": "duffy",
    "status": "final",
    "code": {
        "coding": [
            {
                "system": "http://example.org/fhir/CodeSystem/leukopenia-cds-site-codes",
                "code": "duffy-phenotype",
            }
        ]
    },
    "valueString": "duffy-null",
}


def when(days: float = 0, hours: float = 0) -> str:
    return (NOW - timedelta(days=days, hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def count(analyte: str, value: float, days: float, status: str = "final", **extra) -> dict:
    unit = "Cel" if analyte == "temp" else "10*3/uL"
    return {
        "resourceType": "Observation",
        "id": f"{analyte}-{value}-{days}",
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": LOINC_CODES[analyte]}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when(days),
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
        **extra,
    }


def sle() -> dict:
    return {
        "resourceType": "Condition",
        "id": "sle",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "55464009"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
    }


def dosage(value: float, unit: str = "mg", frequency: int = 1, period_unit: str = "d") -> dict:
    return {
        "text": "as ordered",
        "timing": {"repeat": {"frequency": frequency, "period": 1, "periodUnit": period_unit}},
        "doseAndRate": [{"doseQuantity": {"value": value, "unit": unit, "code": unit}}],
    }


def med_request(
    rid: str,
    text: str,
    status: str = "draft",
    code: str | None = None,
    dose: dict | None = None,
    days: float = 0,
    **extra: Any,
) -> dict:
    concept: dict[str, Any] = {"text": text}
    if code:
        concept["coding"] = [{"system": RXNORM, "code": code}]
    resource = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{PATIENT}"},
        "authoredOn": when(days),
        **extra,
    }
    if dose:
        resource["dosageInstruction"] = [dose]
    return resource


def bundle(*resources: dict) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


def record(
    resources: list[dict], drafts: list[dict], selections: list[str] | None = None
) -> PatientRecord:
    return build_record(
        resources, PATIENT, NOW, KNOWLEDGE, drafts=read_draft_orders(bundle(*drafts), selections)
    )


def cards(
    resources: list[dict],
    drafts: list[dict],
    hook: str = "order-sign",
    selections: list[str] | None = None,
) -> dict[str, Any]:
    """{rule id: finding} from the order services' rules."""
    findings = evaluate_rules(record(resources, drafts, selections), KNOWLEDGE, hook, ORDER_RULES)
    return {f.rule: f for f in findings}
