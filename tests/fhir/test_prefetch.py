"""Prefetch semantics per key: data, no data (null, empty), the client's errors, absent keys,
and when the call cannot be answered at all (412)."""

from dataclasses import replace

import pytest

from cds_service.fhir.gather import PreconditionFailed, gather

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


def test_all_keys_present_makes_no_fhir_call(templates, config, fhir):
    gathered = gather(templates, CONTEXT, full_prefetch(templates), FHIR_SERVER, TOKEN, config)
    assert len(fhir.calls) == 0
    assert gathered.unavailable == {} and gathered.incomplete == {}
    assert gathered.resources["patient"] == [resource("Patient", PATIENT_ID)]
    assert [r["id"] for r in gathered.resources["counts"]] == ["counts-1"]


@pytest.mark.parametrize("no_data", [None, searchset()], ids=["null", "empty searchset"])
def test_null_and_empty_searchset_mean_no_data_and_no_fetch(templates, config, fhir, no_data):
    prefetch = full_prefetch(templates) | {"conditions": no_data, "patient": None}
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert len(fhir.calls) == 0
    assert gathered.resources["conditions"] == [] and gathered.resources["patient"] == []
    assert "conditions" not in gathered.unavailable


def test_absent_key_without_fhir_server_is_a_failed_precondition(templates, config):
    prefetch = full_prefetch(templates)
    del prefetch["counts"]
    with pytest.raises(PreconditionFailed, match="counts"):
        gather(templates, CONTEXT, prefetch, None, None, config)


def test_absent_key_without_token_is_a_failed_precondition(templates, config, fhir):
    config = replace(config, fhir_allow_unauthenticated=False)  # as in production
    prefetch = full_prefetch(templates)
    del prefetch["counts"]
    with pytest.raises(PreconditionFailed, match="access token"):
        gather(templates, CONTEXT, prefetch, FHIR_SERVER, None, config)
    assert len(fhir.calls) == 0


def test_no_prefetch_and_no_fhir_server_is_a_failed_precondition(templates, config):
    with pytest.raises(PreconditionFailed):
        gather(templates, CONTEXT, None, None, None, config)


def test_client_error_without_fhir_access_marks_the_key_unavailable(templates, config):
    prefetch = full_prefetch(templates) | {"counts": operation_outcome()}
    gathered = gather(templates, CONTEXT, prefetch, None, None, config)
    assert "OperationOutcome" in gathered.unavailable["counts"]
    assert "counts" not in gathered.resources
    assert gathered.resources["conditions"]


def test_outcomes_everywhere_and_no_fhir_access_is_a_failed_precondition(templates, config):
    prefetch = {key: operation_outcome() for key in templates}
    with pytest.raises(PreconditionFailed, match="no FHIR data"):
        gather(templates, CONTEXT, prefetch, None, None, config)


def test_prefetch_of_the_wrong_type_is_not_taken_as_data(templates, config):
    prefetch = full_prefetch(templates) | {"conditions": resource("Patient", PATIENT_ID)}
    gathered = gather(templates, CONTEXT, prefetch, None, None, config)
    assert "wrong type" in gathered.unavailable["conditions"]


def test_included_medications_are_kept_apart_from_the_requests(templates, config):
    request = resource(
        "MedicationRequest", "rx1", medicationReference={"reference": "Medication/m1"}
    )
    included = {"resource": resource("Medication", "m1"), "search": {"mode": "include"}}
    bundle = searchset(request)
    bundle["entry"].append(included)
    prefetch = full_prefetch(templates) | {"medicationRequests": bundle}
    gathered = gather(templates, CONTEXT, prefetch, None, None, config)
    assert gathered.resources["medicationRequests"] == [request]
    assert gathered.resources["medications"] == [resource("Medication", "m1")]
    assert "medications" not in gathered.unavailable


def test_unresolved_medication_without_fhir_access_is_reported(templates, config):
    request = resource(
        "MedicationRequest", "rx1", medicationReference={"reference": "Medication/m1"}
    )
    prefetch = full_prefetch(templates) | {"medicationRequests": searchset(request)}
    gathered = gather(templates, CONTEXT, prefetch, None, None, config)
    assert "no FHIR access" in gathered.unavailable["medications"]
    assert gathered.resources["medicationRequests"] == [request]


def test_next_page_without_fhir_access_marks_the_key_incomplete(templates, config):
    page = searchset(resource("Condition", "c1"), next_url=f"{FHIR_SERVER}/Condition?page=2")
    prefetch = full_prefetch(templates) | {"conditions": page}
    gathered = gather(templates, CONTEXT, prefetch, None, None, config)
    assert gathered.resources["conditions"] == [resource("Condition", "c1")]
    assert "later pages" in gathered.incomplete["conditions"]


@pytest.mark.parametrize(
    "garbage",
    [
        "a string",
        [1, 2],
        {"no": "resourceType"},
        {"resourceType": "Bundle", "entry": "not a list", "link": "nor this"},
        {"resourceType": "Bundle", "entry": [None, {"resource": "x"}, {"search": 1}]},
        {"resourceType": "Bundle", "link": [{"relation": "next", "url": 7}], "entry": []},
    ],
)
def test_malformed_prefetch_values_never_raise(templates, config, garbage):
    prefetch = full_prefetch(templates) | {"conditions": garbage}
    gathered = gather(templates, CONTEXT, prefetch, None, None, config)
    assert gathered.resources.get("conditions", []) == []
    assert gathered.resources["counts"]
