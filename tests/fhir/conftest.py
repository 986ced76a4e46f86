"""Shared fixtures: the patient-view service's own prefetch templates, a request context, an
EHR FHIR server address and token, and builders for FHIR JSON."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from cds_service.config import Settings, load_config
from cds_service.services import load_services

FHIR_SERVER = "https://ehr.example.org/fhir"
TOKEN = "opaque-token-8c1f2e"
PATIENT_ID = "pat-123"
CONTEXT = {"userId": "Practitioner/dr-1", "patientId": PATIENT_ID, "encounterId": "enc-9"}


@pytest.fixture(scope="session")
def templates() -> dict[str, str]:
    return load_services()["leukopenia-patient-view"].prefetch


@pytest.fixture
def config() -> Settings:
    return load_config({"ENV": "testing"})


@pytest.fixture
def fhir() -> responses.RequestsMock:
    """The EHR's FHIR server; every request not registered fails the call (unreachable)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def searchset(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def resource(resource_type: str, resource_id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": resource_type, "id": resource_id, **fields}


def operation_outcome() -> dict[str, Any]:
    issue = {"severity": "error", "code": "timeout", "diagnostics": "query timed out"}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def full_prefetch(templates: dict[str, str]) -> dict[str, Any]:
    """A prefetch with every key satisfied by one resource of the template's type."""
    prefetch: dict[str, Any] = {"patient": resource("Patient", PATIENT_ID)}
    for key, template in templates.items():
        if key != "patient":
            prefetch[key] = searchset(resource(template.split("?")[0], f"{key}-1"))
    return prefetch
