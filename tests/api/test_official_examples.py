"""The derived official request bodies (order-select, order-sign R4): no prefetch and an http
fhirServer, so the service fetches every key; the FHIR server is mocked with `responses`."""

from __future__ import annotations

import json
import re

import pytest
import responses

from tests.support.scenarios import FIXTURES, call

SERVER = "http://hooks.smarthealthit.org:9080"
EMPTY = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}


def _request(name: str) -> dict:
    return json.loads((FIXTURES / "cds-hooks-examples" / name).read_text())


@pytest.mark.parametrize("name", ["request-order-select-r4.json", "request-order-sign-r4.json"])
def test_derived_request_is_answered_from_the_fhir_server(client, name: str) -> None:
    with responses.RequestsMock() as fhir:
        fhir.add(responses.GET, re.compile(re.escape(SERVER) + "/.*"), json=EMPTY)
        status, body = call(client, _request(name))
        assert status == 200, body
        assert body == {"cards": []}  # no SLE, no immunosuppressant: out of scope
        assert all(
            c.request.headers["Authorization"] == "Bearer some-opaque-fhir-access-token"
            for c in fhir.calls
        )
        assert len(fhir.calls) == 8  # one search per prefetch key


@pytest.mark.parametrize("name", ["request-order-select-r4.json", "request-order-sign-r4.json"])
def test_derived_request_with_sle_on_the_server_reads_the_amoxicillin_draft(
    client, name: str
) -> None:
    sle = {
        "resourceType": "Condition",
        "id": "sle",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "55464009"}]},
        "subject": {"reference": "Patient/1288992"},
    }
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fhir:
        fhir.add(
            responses.GET,
            re.compile(re.escape(SERVER) + "/Condition.*"),
            json={**EMPTY, "entry": [{"resource": sle}]},
        )
        fhir.add(responses.GET, re.compile(re.escape(SERVER) + "/.*"), json=EMPTY)
        status, body = call(client, _request(name))
    assert status == 200, body
    # Amoxicillin is no trigger and the NutritionOrder is tolerated: still no card.
    assert body == {"cards": []}


def test_unreachable_fhir_server_is_never_a_5xx(client) -> None:
    with responses.RequestsMock():  # every call fails: connection refused
        status, _ = call(client, _request("request-order-sign-r4.json"))
    assert status < 500
