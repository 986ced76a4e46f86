"""Small FHIR R4 builders for rule tests: each call makes one resource as an EHR sends it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
PATIENT = "p1"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
_ids = itertools.count(1)

WBC, ANC, ALC = "6690-2", "751-8", "731-0"
NEUTROPHIL_PCT, TEMPERATURE, WEIGHT = "770-8", "8310-5", "29463-7"


def when(days_ago: float = 0, hours_ago: float = 0) -> str:
    moment = NOW - timedelta(days=days_ago, hours=hours_ago)
    return moment.isoformat().replace("+00:00", "Z")


def observation(
    code: str,
    value: float | None,
    unit: str | None = "10*3/uL",
    *,
    days_ago: float = 0,
    hours_ago: float = 0,
    status: str = "final",
    ucum: bool = True,
    specimen: str | None = None,
    low: float | None = None,
    high: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"obs{next(_ids)}",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when(days_ago, hours_ago),
    }
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity["unit"] = unit
            if ucum:
                quantity |= {"system": UCUM, "code": unit}
        obs["valueQuantity"] = quantity
    if specimen:
        obs["specimen"] = {"reference": specimen}
    if low is not None or high is not None:
        bounds = {}
        if low is not None:
            bounds["low"] = {"value": low, "unit": unit, "system": UCUM, "code": unit}
        if high is not None:
            bounds["high"] = {"value": high, "unit": unit, "system": UCUM, "code": unit}
        obs["referenceRange"] = [bounds]
    return obs | extra


def temperature(celsius: float, hours_ago: float, unit: str = "Cel") -> dict[str, Any]:
    return observation(TEMPERATURE, celsius, unit, hours_ago=hours_ago)


def condition(
    code: str,
    system: str = SNOMED,
    *,
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": f"cond{next(_ids)}",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
    }
    if clinical:
        resource["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": clinical,
                }
            ]
        }
    if verification:
        resource["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        }
    return resource | extra


def sle(**kwargs: Any) -> dict[str, Any]:
    return condition("55464009", **kwargs)


def medication_request(
    rxnorm: str | None,
    *,
    text: str | None = None,
    status: str = "active",
    days_ago: float = 365,
    dose_mg: float | None = None,
    per_day: float = 1,
    **extra: Any,
) -> dict[str, Any]:
    concept: dict[str, Any] = {}
    if rxnorm:
        concept["coding"] = [{"system": RXNORM, "code": rxnorm}]
    if text:
        concept["text"] = text
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": f"mr{next(_ids)}",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{PATIENT}"},
        "authoredOn": when(days_ago),
    }
    if dose_mg is not None:
        resource["dosageInstruction"] = [
            {
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {"doseQuantity": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}
                ],
            }
        ]
    return resource | extra


AZATHIOPRINE, MYCOPHENOLATE, METHOTREXATE, TACROLIMUS = "1256", "68149", "6851", "42316"
HYDROXYCHLOROQUINE, PREDNISONE = "5521", "8640"


def fhir_authorization(token: str) -> dict[str, Any]:
    """A CDS Hooks `fhirAuthorization` object carrying `token`."""
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "user/*.read",
        "subject": "cds",
    }
