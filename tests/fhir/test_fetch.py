"""Fetching what the prefetch lacks from the EHR's FHIR server (mocked with `responses`)."""

import logging
from dataclasses import replace

import pytest
import requests
from responses import matchers

from cds_service.config import ConfigError, load_config
from cds_service.fhir.gather import PreconditionFailed, gather
from tests.support.settings import production

from .conftest import (
    CONTEXT,
    FHIR_SERVER,
    PATIENT_ID,
    TOKEN,
    full_prefetch,
    operation_outcome,
    resource,
    searchset,
)

FHIR_HEADERS = {"Content-Type": "application/fhir+json"}


def without(prefetch, *keys):
    return {key: value for key, value in prefetch.items() if key not in keys}


def test_absent_key_is_fetched_alone_with_the_bearer_token(templates, config, fhir):
    condition = resource("Condition", "c1")
    fhir.get(f"{FHIR_SERVER}/Condition", json=searchset(condition), headers=FHIR_HEADERS)
    context = CONTEXT | {"patientId": "pat 1&2"}  # shows the encoding of substituted values
    prefetch = without(full_prefetch(templates), "conditions")
    gathered = gather(templates, context, prefetch, FHIR_SERVER, TOKEN, config)
    assert len(fhir.calls) == 1
    request = fhir.calls[0].request
    # The service's own search asks for a large page (fewer sequential rounds of paging).
    assert request.url == f"{FHIR_SERVER}/Condition?patient=pat%201%262&_count=200"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/fhir+json"
    assert gathered.resources["conditions"] == [condition]
    assert gathered.unavailable == {}


def test_fetched_query_keeps_the_template_query_with_larger_pages(templates, config, fhir):
    fhir.get(f"{FHIR_SERVER}/Observation", json=searchset(), content_type="application/json")
    gather(
        templates, CONTEXT, without(full_prefetch(templates), "weights"), FHIR_SERVER, TOKEN, config
    )
    assert fhir.calls[0].request.params == {
        "patient": PATIENT_ID,
        "code": "http://loinc.org|29463-7",
        "_sort": "-date",
        "_count": "200",  # the template's 5 is a page size: fewer pages, fewer rounds
    }


@pytest.mark.parametrize(
    "client_error",
    [
        operation_outcome(),
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": operation_outcome(), "search": {"mode": "outcome"}}],
        },
    ],
    ids=["OperationOutcome", "Bundle of outcomes"],
)
def test_client_error_in_the_prefetch_is_fetched_again(templates, config, fhir, client_error):
    observation = resource("Observation", "o1")
    fhir.get(f"{FHIR_SERVER}/Observation", json=searchset(observation), headers=FHIR_HEADERS)
    prefetch = full_prefetch(templates) | {"counts": client_error}
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert len(fhir.calls) == 1
    assert fhir.calls[0].request.params["code"].startswith("http://loinc.org|6690-2,")
    assert gathered.resources["counts"] == [observation]


def register_pages(fhir, first_page_in_prefetch):
    """Three pages of Conditions; returns the first page (from the prefetch or the server)."""
    pages = [
        searchset(resource("Condition", "c1"), next_url=f"{FHIR_SERVER}/Condition?page=2"),
        searchset(resource("Condition", "c2"), next_url=f"{FHIR_SERVER}/Condition?page=3"),
        searchset(resource("Condition", "c3")),
    ]
    if not first_page_in_prefetch:
        fhir.get(
            f"{FHIR_SERVER}/Condition",
            json=pages[0],
            headers=FHIR_HEADERS,
            match=[matchers.query_param_matcher({"patient": PATIENT_ID, "_count": "200"})],
        )
    for number in (2, 3):
        fhir.get(
            f"{FHIR_SERVER}/Condition",
            json=pages[number - 1],
            headers=FHIR_HEADERS,
            match=[matchers.query_param_matcher({"page": str(number)})],
        )
    return pages[0]


@pytest.mark.parametrize("first_page_in_prefetch", [True, False], ids=["prefetched", "fetched"])
def test_next_pages_are_followed(templates, config, fhir, first_page_in_prefetch):
    first = register_pages(fhir, first_page_in_prefetch)
    prefetch = without(full_prefetch(templates), "conditions")
    if first_page_in_prefetch:
        prefetch["conditions"] = first
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert [r["id"] for r in gathered.resources["conditions"]] == ["c1", "c2", "c3"]
    assert all(call.request.headers["Authorization"] == f"Bearer {TOKEN}" for call in fhir.calls)
    assert gathered.incomplete == {}


def test_page_cap_stops_paging_and_says_so(templates, config, fhir):
    first = register_pages(fhir, first_page_in_prefetch=True)
    config = replace(config, fhir_max_pages=2)
    prefetch = full_prefetch(templates) | {"conditions": first}
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert [r["id"] for r in gathered.resources["conditions"]] == ["c1", "c2"]
    assert len(fhir.calls) == 1
    assert "first 2 pages" in gathered.incomplete["conditions"]


def test_next_link_to_another_host_is_not_followed(templates, config, fhir):
    elsewhere = "https://attacker.example.net/fhir/Condition?page=2"
    fhir.get(elsewhere, json=searchset(resource("Condition", "stolen")), headers=FHIR_HEADERS)
    first = searchset(resource("Condition", "c1"), next_url=elsewhere)
    prefetch = full_prefetch(templates) | {"conditions": first}
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert len(fhir.calls) == 0
    assert gathered.resources["conditions"] == [resource("Condition", "c1")]
    assert "outside fhirServer" in gathered.incomplete["conditions"]


def failing(fhir, **response):
    fhir.get(f"{FHIR_SERVER}/Condition", **response)


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        ({"status": 401, "json": operation_outcome()}, "refused access (HTTP 401)"),
        ({"status": 403, "json": operation_outcome()}, "refused access (HTTP 403)"),
        ({"status": 404, "json": operation_outcome()}, "not found"),
        ({"status": 500, "body": "oops"}, "server error (HTTP 500)"),
        ({"status": 302, "headers": {"Location": "https://elsewhere.example/"}}, "redirected"),
        ({"body": "{not json", "headers": FHIR_HEADERS}, "malformed JSON"),
        ({"body": "<html/>", "content_type": "text/html"}, "did not answer with FHIR JSON"),
        ({"json": resource("Patient", PATIENT_ID), "headers": FHIR_HEADERS}, "wrong type"),
        ({"json": searchset(resource("Observation", "o1")), "headers": FHIR_HEADERS}, "wrong type"),
        ({"json": operation_outcome(), "headers": FHIR_HEADERS}, "OperationOutcome"),
        ({"body": requests.ConnectionError("refused")}, "could not be reached"),
    ],
    ids=[
        "401",
        "403",
        "404",
        "500",
        "redirect",
        "malformed",
        "html",
        "patient-for-search",
        "bundle-of-wrong-type",
        "outcome",
        "unreachable",
    ],
)
def test_fetch_failure_marks_only_that_key_unavailable(templates, config, fhir, response, reason):
    failing(fhir, **response)
    prefetch = without(full_prefetch(templates), "conditions")
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert reason in gathered.unavailable["conditions"]
    assert "conditions" not in gathered.resources
    assert gathered.resources["counts"]


def test_bundle_keeps_only_resources_of_the_template_type(templates, config, fhir):
    condition = resource("Condition", "c1")
    fhir.get(
        f"{FHIR_SERVER}/Condition",
        headers=FHIR_HEADERS,
        json=searchset(condition, resource("Observation", "o1")),
    )
    prefetch = without(full_prefetch(templates), "conditions")
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert gathered.resources["conditions"] == [condition]


@pytest.mark.parametrize("declared", [True, False], ids=["Content-Length", "streamed"])
def test_oversize_response_is_abandoned(templates, config, fhir, declared):
    config = replace(config, fhir_max_response_bytes=1000)
    body = searchset(
        *[resource("Condition", f"c{n}", note=[{"text": "x" * 100}]) for n in range(20)]
    )
    fhir.get(
        f"{FHIR_SERVER}/Condition",
        json=body,
        headers=FHIR_HEADERS,
        auto_calculate_content_length=declared,
    )
    prefetch = without(full_prefetch(templates), "conditions")
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert "larger than 1000 bytes" in gathered.unavailable["conditions"]


def test_every_fetch_failing_with_nothing_prefetched_is_a_failed_precondition(
    templates, config, fhir
):
    fhir.get(f"{FHIR_SERVER}/Patient/{PATIENT_ID}", status=503)
    for resource_type in (
        "Condition",
        "MedicationStatement",
        "MedicationRequest",
        "MedicationAdministration",
        "Observation",
    ):
        fhir.get(f"{FHIR_SERVER}/{resource_type}", status=503)
    with pytest.raises(PreconditionFailed, match=r"counts: FHIR server error \(HTTP 503\)"):
        gather(templates, CONTEXT, None, FHIR_SERVER, TOKEN, config)


def test_template_token_without_value_is_unavailable_not_fetched(config, fhir):
    templates = {
        "user": "Practitioner/{{userPractitionerId}}",
        "patient": "Patient/{{context.patientId}}",
    }
    context = CONTEXT | {"userId": "PractitionerRole/r1"}
    prefetch = {"patient": resource("Patient", PATIENT_ID)}
    gathered = gather(templates, context, prefetch, FHIR_SERVER, TOKEN, config)
    assert len(fhir.calls) == 0
    assert "{{userPractitionerId}} has no value" in gathered.unavailable["user"]


def test_http_fhir_server_is_refused_in_production(templates, fhir):
    config = load_config(production())
    prefetch = without(full_prefetch(templates), "conditions")
    with pytest.raises(PreconditionFailed, match="https"):
        gather(templates, CONTEXT, prefetch, "http://ehr.example.org/fhir", TOKEN, config)
    assert len(fhir.calls) == 0


def test_http_fhir_server_is_allowed_in_development(templates, config, fhir):
    fhir.get("http://localhost:8080/fhir/Condition", json=searchset(), headers=FHIR_HEADERS)
    prefetch = without(full_prefetch(templates), "conditions")
    gathered = gather(templates, CONTEXT, prefetch, "http://localhost:8080/fhir", TOKEN, config)
    assert gathered.resources["conditions"] == []


def test_open_server_is_read_without_a_token_by_default_in_development(templates, fhir):
    # The public sandbox sends fhirServer and no fhirAuthorization for its open server: the
    # missing data is fetched, not answered with a 412 the sandbox would show as "All clear".
    fhir.get(f"{FHIR_SERVER}/Condition", json=searchset(resource("Condition", "c1")))
    config = load_config({"ENV": "development"})
    prefetch = without(full_prefetch(templates), "conditions")
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, None, config)
    assert "Authorization" not in fhir.calls[0].request.headers
    assert gathered.resources["conditions"] == [resource("Condition", "c1")]


@pytest.mark.parametrize(
    "config",
    [load_config({"ENV": "development", "FHIR_ALLOW_UNAUTHENTICATED": False}), None],
    ids=["turned-off", "production-default"],
)
def test_without_a_token_nothing_is_fetched_unless_allowed(templates, fhir, config):
    config = config or load_config(production())
    prefetch = without(full_prefetch(templates), "conditions")
    with pytest.raises(PreconditionFailed, match="no fhirAuthorization"):
        gather(templates, CONTEXT, prefetch, FHIR_SERVER, None, config)
    assert len(fhir.calls) == 0


def test_open_servers_cannot_be_allowed_in_production():
    with pytest.raises(ConfigError, match="FHIR_ALLOW_UNAUTHENTICATED"):
        load_config(production(FHIR_ALLOW_UNAUTHENTICATED=True))


def medication_request(reference, resource_id="rx1", **fields):
    return resource(
        "MedicationRequest", resource_id, medicationReference={"reference": reference}, **fields
    )


def test_referenced_medications_are_fetched_once(templates, config, fhir):
    medication = resource("Medication", "m1", code={"text": "methotrexate"})
    fhir.get(f"{FHIR_SERVER}/Medication/m1", json=medication, headers=FHIR_HEADERS)
    statement = resource(
        "MedicationStatement", "s1", medicationReference={"reference": "Medication/m1"}
    )
    prefetch = full_prefetch(templates) | {
        "medicationRequests": searchset(
            medication_request("Medication/m1"),
            medication_request(
                "#contained", "rx2", contained=[resource("Medication", "contained")]
            ),
        ),
        "medicationStatements": searchset(statement),
    }
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert [call.request.url for call in fhir.calls] == [f"{FHIR_SERVER}/Medication/m1"]
    assert fhir.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert gathered.resources["medications"] == [medication]
    assert "medications" not in gathered.unavailable


def test_medication_reference_to_another_host_is_not_fetched(templates, config, fhir):
    fhir.get(
        f"{FHIR_SERVER}/Medication/m1", json=resource("Medication", "m1"), headers=FHIR_HEADERS
    )
    prefetch = full_prefetch(templates) | {
        "medicationRequests": searchset(
            medication_request(f"{FHIR_SERVER}/Medication/m1/_history/3"),
            medication_request("https://other.example.net/fhir/Medication/m2", "rx2"),
        )
    }
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert [call.request.url for call in fhir.calls] == [f"{FHIR_SERVER}/Medication/m1"]
    assert gathered.resources["medications"] == [resource("Medication", "m1")]
    assert "outside fhirServer" in gathered.incomplete["medications"]


def test_token_and_patient_id_never_reach_the_logs(templates, config, fhir, caplog):
    caplog.set_level(logging.DEBUG)
    fhir.get(f"{FHIR_SERVER}/Condition", status=401)
    fhir.get(f"{FHIR_SERVER}/Observation", body="{not json", headers=FHIR_HEADERS)
    prefetch = without(full_prefetch(templates), "conditions", "counts")
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    with pytest.raises(PreconditionFailed) as failure:
        gather(templates, CONTEXT, None, FHIR_SERVER, TOKEN, config)
    assert gathered.unavailable  # the failures above were logged
    assert caplog.records
    for text in (caplog.text, str(failure.value), str(gathered.unavailable)):
        assert TOKEN not in text
        assert PATIENT_ID not in text
