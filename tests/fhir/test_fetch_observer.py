"""The FHIR client reports each call to the observer it is given (the app gives its metrics)."""

from __future__ import annotations

import pytest

from cds_service.fhir.client import CallBudget, FhirServer, FhirUnavailable, get_json
from cds_service.fhir.gather import gather
from tests.support.fhir_stub import FhirStub

from .conftest import CONTEXT, FHIR_SERVER, PATIENT_ID, TOKEN, resource

FHIR_HEADERS = {"Content-Type": "application/fhir+json"}


class Reports:
    def __init__(self) -> None:
        self.calls: list[tuple[float, bool]] = []

    def __call__(self, seconds: float, ok: bool) -> None:
        self.calls.append((seconds, ok))


def test_every_call_of_a_gathering_is_reported_once_as_answered(templates, config):
    reports = Reports()
    with FhirStub([resource("Patient", PATIENT_ID)], token=TOKEN) as stub:
        gather(templates, CONTEXT, None, stub.base_url, TOKEN, config, observe_fetch=reports)
    assert len(reports.calls) == len(stub.calls) == len(templates)
    assert all(ok and seconds >= 0 for seconds, ok in reports.calls)


def test_a_call_that_fails_is_reported_as_not_answered(fhir, config):
    fhir.add("GET", f"{FHIR_SERVER}/Patient/p", status=500, headers=FHIR_HEADERS)
    reports = Reports()
    with pytest.raises(FhirUnavailable, match="HTTP 500"):
        get_json(
            FhirServer(FHIR_SERVER, TOKEN),
            f"{FHIR_SERVER}/Patient/p",
            CallBudget(2.0, 10**6),
            config,
            reports,
        )
    assert [ok for _, ok in reports.calls] == [False]
