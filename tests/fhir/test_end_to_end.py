"""`gather` against a real HTTP FHIR server process (tests/support/fhir_stub.py) serving a Synthea
patient on an immunosuppressant (methotrexate) with two WBC results."""

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from cds_service.fhir.gather import PreconditionFailed, gather
from tests.support.fhir_stub import FhirStub, load_bundle

from .conftest import TOKEN, resource

# A verbatim Synthea bundle kept in the repository (tests/data/README.md).
SYNTHEA = Path(__file__).resolve().parents[1] / "data" / "synthea-r4"
ASA_ID = "c79b748f-a792-4aea-bca5-c7c9c5b188cd"
CONTEXT = {"userId": "Practitioner/dr-1", "patientId": ASA_ID}


@pytest.fixture(scope="module")
def asa():
    return load_bundle(next(SYNTHEA.glob("Asa_Hermiston_*.json")))


def test_everything_fetched_from_a_real_fhir_server(templates, config, asa, caplog):
    # not a deadline test: a loaded CI machine is slow
    config = replace(config, fhir_deadline_seconds=5.0)
    caplog.set_level(logging.DEBUG)
    with FhirStub(asa, token=TOKEN) as stub:
        gathered = gather(templates, CONTEXT, None, stub.base_url, TOKEN, config)
    assert gathered.unavailable == {} and gathered.incomplete == {}
    assert gathered.resources["patient"][0]["id"] == ASA_ID
    wbc = gathered.resources["counts"]
    assert [round(o["valueQuantity"]["value"], 2) for o in wbc] == [4.82, 5.34]  # newest first
    drugs = {
        r["medicationCodeableConcept"]["coding"][0]["code"]
        for r in gathered.resources["medicationRequests"]
    }
    assert {"105586", "835900"} <= drugs  # methotrexate, ciclosporin
    assert gathered.resources["medicationStatements"] == []
    assert len(stub.calls) == len(templates)
    assert {call.authorization for call in stub.calls} == {f"Bearer {TOKEN}"}
    assert {call.accept for call in stub.calls} == {"application/fhir+json"}
    assert TOKEN not in caplog.text and ASA_ID not in caplog.text


def test_pages_of_a_real_server_are_followed_up_to_the_cap(config, asa):
    config = replace(config, fhir_deadline_seconds=5.0)
    templates = {"vitals": "Observation?patient={{context.patientId}}&_count=2"}
    config = replace(config, fhir_max_pages=3)
    with FhirStub(asa, token=TOKEN, max_page_size=2) as stub:
        gathered = gather(templates, CONTEXT, None, stub.base_url, TOKEN, config)
    assert len(gathered.resources["vitals"]) == 6
    assert len(stub.calls) == 3
    assert "first 3 pages" in gathered.incomplete["vitals"]


def test_hanging_server_is_abandoned_at_the_deadline(templates, config, asa):
    # The per-call timeout outlasts the 2 s hang, so only the 0.4 s deadline can stop waiting:
    # had it not, the answers would have arrived and nothing would be unavailable.
    config = replace(config, fhir_call_timeout_seconds=10.0, fhir_deadline_seconds=0.4)
    prefetch = {"patient": resource("Patient", ASA_ID)}
    with FhirStub(asa, token=TOKEN, delay_seconds=2.0) as stub:
        gathered = gather(templates, CONTEXT, prefetch, stub.base_url, TOKEN, config)
    assert gathered.resources == {"patient": [resource("Patient", ASA_ID)]}
    assert set(gathered.unavailable) == set(templates) - {"patient"}
    assert all("did not answer in time" in r for r in gathered.unavailable.values())


def test_first_page_is_kept_when_later_pages_miss_the_deadline(config, asa):
    # The newest results (first page, -date) are used; the key is marked incomplete so the
    # cards say data is missing. Before, the whole key was dropped as unavailable.
    # the first page comes at once, even on a busy CI
    config = replace(config, fhir_call_timeout_seconds=10.0, fhir_deadline_seconds=1.5)
    templates = {"vitals": "Observation?patient={{context.patientId}}&_sort=-date&_count=2"}
    with FhirStub(asa, token=TOKEN, later_pages_delay_seconds=6.0, max_page_size=2) as stub:
        gathered = gather(templates, CONTEXT, None, stub.base_url, TOKEN, config)
    assert len(gathered.resources["vitals"]) == 2
    assert gathered.unavailable == {}
    assert "later pages" in gathered.incomplete["vitals"]
    assert "did not answer in time" in gathered.incomplete["vitals"]


def test_hanging_server_with_nothing_prefetched_is_a_failed_precondition(templates, config, asa):
    config = replace(config, fhir_call_timeout_seconds=10.0, fhir_deadline_seconds=0.4)
    with (
        FhirStub(asa, token=TOKEN, delay_seconds=2.0) as stub,
        pytest.raises(PreconditionFailed, match="did not answer in time"),
    ):
        gather(templates, CONTEXT, None, stub.base_url, TOKEN, config)


def test_wrong_token_is_refused_by_the_server(templates, config, asa):
    prefetch = {"patient": resource("Patient", ASA_ID)}
    with FhirStub(asa, token=TOKEN) as stub:
        gathered = gather(templates, CONTEXT, prefetch, stub.base_url, "expired-token", config)
    assert "refused access (HTTP 401)" in gathered.unavailable["conditions"]
