"""One round of FHIR calls per hook call: every query at once, Medications in the same round,
and the call's budget of time and bytes."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
from responses import matchers

from cds_service.fhir import cache as fhir_cache
from cds_service.fhir import client as fhir_client
from cds_service.fhir.client import CallBudget, FetchRound, FhirServer, FhirUnavailable, get_json
from cds_service.fhir.gather import (
    MAX_MEDICATION_READS,
    MEDICATION_BATCH,
    PreconditionFailed,
    gather,
    own_search,
)
from tests.support.fhir_stub import FhirStub
from tests.support.network import eventually

from .conftest import CONTEXT, FHIR_SERVER, PATIENT_ID, TOKEN, full_prefetch, resource, searchset

FHIR_HEADERS = {"Content-Type": "application/fhir+json"}
SUBJECT = {"reference": f"Patient/{PATIENT_ID}"}


def patient_data() -> list[dict]:
    """A patient with a Medication named by a request and another by a statement."""
    return [
        resource("Patient", PATIENT_ID),
        resource("Condition", "c1", subject=SUBJECT),
        resource("Medication", "m1", code={"text": "azathioprine"}),
        resource("Medication", "m2", code={"text": "methotrexate"}),
        resource(
            "MedicationRequest", "rx1", subject=SUBJECT,
            medicationReference={"reference": "Medication/m1"},
        ),
        resource(
            "MedicationStatement", "st1", subject=SUBJECT,
            medicationReference={"reference": "Medication/m2"},
        ),
    ]  # fmt: skip


def test_every_query_goes_out_at_once_and_medications_come_included(templates, config):
    config = replace(config, fhir_deadline_seconds=30.0)  # not a deadline test
    # Each answer waits 1 s, so queries sent in two rounds would never be in flight together.
    with FhirStub(patient_data(), token=TOKEN, delay_seconds=1.0) as stub:
        gathered = gather(templates, CONTEXT, None, stub.base_url, TOKEN, config)
    assert stub.max_in_flight == len(templates)
    assert len(stub.calls) == len(templates)  # no Medication read: `_include` brought them
    assert sorted(m["id"] for m in gathered.resources["medications"]) == ["m1", "m2"]
    assert gathered.unavailable == {} and gathered.incomplete == {}


def test_medication_is_read_as_soon_as_the_resource_naming_it_arrives(templates, config):
    config = replace(config, fhir_deadline_seconds=30.0)
    # A server without `_include`, whose Observation searches are slow: the Medication read
    # must not wait for them.
    with FhirStub(
        patient_data(), token=TOKEN, supports_include=False, delay_by_type={"Observation": 1.5}
    ) as stub:
        gathered = gather(templates, CONTEXT, None, stub.base_url, TOKEN, config)
    medication_reads = [p for p in stub.answered if "/Medication/" in p]
    first_observation = next(i for i, p in enumerate(stub.answered) if p.endswith("/Observation"))
    assert len(medication_reads) == 2
    assert all(stub.answered.index(p) < first_observation for p in medication_reads)
    assert sorted(m["id"] for m in gathered.resources["medications"]) == ["m1", "m2"]
    assert gathered.unavailable == {} and gathered.incomplete == {}


def test_server_refusing_include_is_asked_again_without_it(templates, config, fhir):
    request = resource(
        "MedicationRequest", "rx1", medicationReference={"reference": "Medication/m1"}
    )
    with_include = {
        "patient": PATIENT_ID,
        "_count": "200",
        "_include": "MedicationRequest:medication",
    }
    fhir.get(
        f"{FHIR_SERVER}/MedicationRequest",
        status=400,
        match=[matchers.query_param_matcher(with_include)],
    )
    fhir.get(
        f"{FHIR_SERVER}/MedicationRequest",
        json=searchset(request),
        headers=FHIR_HEADERS,
        match=[matchers.query_param_matcher({"patient": PATIENT_ID})],
    )
    fhir.get(f"{FHIR_SERVER}/Medication/m1", json=resource("Medication", "m1"))
    prefetch = {k: v for k, v in full_prefetch(templates).items() if k != "medicationRequests"}
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert gathered.resources["medicationRequests"] == [request]
    assert gathered.resources["medications"] == [resource("Medication", "m1")]
    assert gathered.unavailable == {}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("MedicationRequest?patient=1", "&_count=200&_include=MedicationRequest:medication"),
        ("MedicationStatement?patient=1", "&_count=200&_include=MedicationStatement:medication"),
        ("Condition?patient=1", "&_count=200"),
        ("MedicationRequest/rx1", ""),
    ],
)
def test_own_searches_include_medications_and_ask_for_large_pages(template, expected):
    resource_type = template.split("?")[0].split("/")[0]
    assert own_search(template, resource_type) == template + expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("patient=1&_count=5&_sort=-date", "patient=1&_sort=-date&_count=200"),
        ("patient=1&_count=500", "patient=1&_count=500"),
    ],
)
def test_own_searches_page_at_least_200_at_a_time(query, expected):
    assert own_search(f"Observation?{query}", "Observation") == f"Observation?{expected}"


def test_byte_budget_of_the_hook_call_stops_further_reading(templates, config, fhir):
    # each answer below is ~2 kB: the second one is over
    config = replace(config, fhir_max_call_bytes=3000)
    notes = [{"text": "x" * 100} for _ in range(18)]
    fhir.get(f"{FHIR_SERVER}/Condition", json=searchset(resource("Condition", "c1", note=notes)))
    fhir.get(f"{FHIR_SERVER}/Observation", json=searchset(resource("Observation", "o", note=notes)))
    fetched = ("conditions", "counts")
    prefetch = {k: v for k, v in full_prefetch(templates).items() if k not in fetched}
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    over = [r for r in gathered.unavailable.values() if "larger than 3000 bytes" in r]
    assert len(over) == 1  # one key fits in the budget, the other does not
    assert len(gathered.resources.get("conditions", []) + gathered.resources.get("counts", [])) == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_answer_arriving_after_the_deadline_is_not_parsed(fhir, config, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(fhir_client, "monotonic", clock)
    parsed = []
    monkeypatch.setattr(fhir_client.json_body, "loads", lambda body: parsed.append(body))
    budget = CallBudget(2.0, 10**6)

    def slow_answer(request):
        clock.now += 5.0  # the body arrives after the 2 s budget
        return 200, FHIR_HEADERS, '{"resourceType": "Patient", "id": "p"}'

    fhir.add_callback("GET", f"{FHIR_SERVER}/Patient/p", callback=slow_answer)
    with pytest.raises(FhirUnavailable, match="did not answer in time"):
        get_json(FhirServer(FHIR_SERVER, TOKEN), f"{FHIR_SERVER}/Patient/p", budget, config)
    assert parsed == []


def test_round_answers_as_soon_as_every_call_is_in_and_not_at_the_deadline(config):
    budget = CallBudget(600.0, 10**6)
    fetch_round = FetchRound(budget, config)
    results: list[object] = []
    fetch_round.submit(lambda: "first", results.append)
    fetch_round.submit(lambda: "second", results.append)
    fetch_round.run()
    assert sorted(results) == ["first", "second"]
    assert budget.seconds_left() > 500  # it did not wait for the deadline


def test_calls_still_out_at_the_deadline_are_reported_late(config):
    budget = CallBudget(0.2, 10**6)
    fetch_round = FetchRound(budget, config)
    release = threading.Event()
    results: list[object] = []
    fetch_round.submit(lambda: release.wait(30), results.append)
    fetch_round.submit(lambda: "quick", results.append)
    fetch_round.run()
    release.set()
    assert results[0] == "quick"
    assert isinstance(results[1], FhirUnavailable) and "in time" in str(results[1])


def test_calls_beyond_the_concurrency_cap_wait_their_turn(config):
    fetch_round = FetchRound(CallBudget(30.0, 10**6), replace(config, fhir_max_concurrent_calls=2))
    running, most = [0], [0]
    lock = threading.Lock()

    def call(number: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        threading.Event().wait(0.02)
        with lock:
            running[0] -= 1
        return number

    results: list[object] = []
    for number in range(5):
        fetch_round.submit(lambda number=number: call(number), results.append)
    fetch_round.run()
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert most[0] == 2


def test_calls_not_started_by_the_deadline_are_reported_late(config):
    budget = CallBudget(0.2, 10**6)
    fetch_round = FetchRound(budget, replace(config, fhir_max_concurrent_calls=1))
    release = threading.Event()
    started: list[str] = []
    results: list[object] = []
    fetch_round.submit(lambda: release.wait(30), results.append)
    fetch_round.submit(lambda: started.append("second"), results.append)
    fetch_round.run()
    release.set()
    assert started == []
    assert len(results) == 2
    assert all(isinstance(r, FhirUnavailable) and "in time" in str(r) for r in results)


def test_an_unexpected_error_in_a_call_is_a_safe_reason(config, caplog):
    fetch_round = FetchRound(CallBudget(30.0, 10**6), config)
    results: list[object] = []

    def broken() -> None:
        raise KeyError("Patient/secret-id")

    fetch_round.submit(broken, results.append)
    fetch_round.run()
    assert isinstance(results[0], FhirUnavailable)
    assert str(results[0]) == "the FHIR data could not be read"
    assert "secret-id" not in caplog.text and "KeyError" in caplog.text


def test_follow_up_calls_submitted_by_a_handler_run_in_the_same_round(config):
    fetch_round = FetchRound(CallBudget(30.0, 10**6), config)
    results: list[object] = []

    def first_arrived(value: object) -> None:
        results.append(value)
        fetch_round.submit(lambda: "follow-up", results.append)

    fetch_round.submit(lambda: "first", first_arrived)
    fetch_round.run()
    assert results == ["first", "follow-up"]


def test_order_sign_after_order_select_reads_the_fhir_server_once(templates, config, fhir):
    fhir.get(f"{FHIR_SERVER}/Condition", json=searchset(resource("Condition", "c1")))
    prefetch = {k: v for k, v in full_prefetch(templates).items() if k != "conditions"}
    first = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    again = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert len(fhir.calls) == 1
    assert again.resources["conditions"] == first.resources["conditions"]
    # Parsed anew each time: one call changing its data cannot change another call's.
    assert again.resources["conditions"][0] is not first.resources["conditions"][0]


def test_remembered_answers_are_only_for_the_same_token(templates, config, fhir):
    fhir.get(f"{FHIR_SERVER}/Condition", json=searchset(resource("Condition", "c1")))
    prefetch = {k: v for k, v in full_prefetch(templates).items() if k != "conditions"}
    gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    gather(templates, CONTEXT, prefetch, FHIR_SERVER, "another-users-token", config)
    assert [c.request.headers["Authorization"] for c in fhir.calls] == [
        f"Bearer {TOKEN}",
        "Bearer another-users-token",
    ]


def test_remembered_answers_expire_and_can_be_turned_off(templates, config, fhir, monkeypatch):
    fhir.get(f"{FHIR_SERVER}/Condition", json=searchset(resource("Condition", "c1")))
    prefetch = {k: v for k, v in full_prefetch(templates).items() if k != "conditions"}
    clock = FakeClock()
    monkeypatch.setattr(fhir_cache, "monotonic", clock)
    gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    clock.now += config.fhir_cache_seconds + 1
    gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    config = replace(config, fhir_cache_seconds=0)
    gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert len(fhir.calls) == 4


def test_answer_memory_is_bounded_in_bytes_oldest_out_first():
    cache = fhir_cache.AnswerCache()
    keys = [
        fhir_cache.cache_key(FHIR_SERVER, TOKEN, f"{FHIR_SERVER}/Patient/{n}") for n in range(3)
    ]
    for key in keys:
        cache.put(key, b"x" * 400, seconds=30, max_bytes=1000)
    assert cache.get(keys[0]) is None
    assert cache.get(keys[1]) == cache.get(keys[2]) == b"x" * 400


def test_calls_abandoned_at_the_deadline_are_stopped(templates, config):
    # Issue 22: a FHIR server trickling bytes kept every socket and thread (greenlet) of a
    # hook call reading after the answer. Each answer here would take minutes to arrive.
    # The deadline leaves time for a first connection in a fresh process (~0.5 s here).
    config = replace(config, fhir_deadline_seconds=2.0, fhir_cache_seconds=0)
    stub = FhirStub(patient_data(), token=TOKEN)
    stub.trickle_seconds = 0.25
    with stub:
        with pytest.raises(PreconditionFailed):  # nothing arrived in time
            gather(templates, CONTEXT, None, stub.base_url, TOKEN, config)
        assert len(stub.calls) == len(templates)
        # The service closed every connection: nothing is trickling any more ...
        assert eventually(lambda: stub.trickling == 0)
    # ... and no thread of the hook call's FHIR round is left running.
    assert eventually(lambda: not [t for t in threading.enumerate() if t.name.startswith("fhir")])


def test_twenty_thousand_medications_are_a_few_id_searches_and_a_note(templates, config, fhir):
    # Issue 22: one call naming 20,000 Medications made 1,513 GETs. They are now searched by
    # `_id` in batches, and past the cap reported missing (a data-missing card, not silence).
    def medication_search(request):
        ids = parse_qs(urlsplit(request.url).query)["_id"][0].split(",")
        found = [resource("Medication", i, code={"text": "azathioprine"}) for i in ids]
        return 200, FHIR_HEADERS, json.dumps(searchset(*found))

    fhir.add_callback("GET", f"{FHIR_SERVER}/Medication", callback=medication_search)
    named = [
        resource(
            "MedicationRequest", f"rx{n}", medicationReference={"reference": f"Medication/m{n}"}
        )
        for n in range(20_000)
    ]
    prefetch = full_prefetch(templates) | {"medicationRequests": searchset(*named)}
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert len(fhir.calls) == MAX_MEDICATION_READS // MEDICATION_BATCH == 10
    assert all("_id=" in call.request.url for call in fhir.calls)
    assert len(gathered.resources["medications"]) == MAX_MEDICATION_READS
    reason = gathered.incomplete["medications"]
    assert reason.startswith("19500 referenced Medications not obtained: more than 500")


def test_a_server_refusing_id_searches_gets_reads(templates, config, fhir):
    fhir.get(f"{FHIR_SERVER}/Medication", status=400, json={"resourceType": "OperationOutcome"})
    for medication_id in ("m1", "m2"):
        fhir.get(
            f"{FHIR_SERVER}/Medication/{medication_id}", json=resource("Medication", medication_id)
        )
    named = [
        resource(
            "MedicationRequest", f"rx{n}", medicationReference={"reference": f"Medication/m{n}"}
        )
        for n in (1, 2, 3)
    ]
    prefetch = full_prefetch(templates) | {"medicationRequests": searchset(*named)}
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    urls = [call.request.url for call in fhir.calls]
    assert urls[0] == f"{FHIR_SERVER}/Medication?_id=m1,m2,m3&_count=3"
    assert sorted(urls[1:]) == [f"{FHIR_SERVER}/Medication/m{n}" for n in (1, 2, 3)]
    assert sorted(m["id"] for m in gathered.resources["medications"]) == ["m1", "m2"]
    assert gathered.incomplete["medications"].startswith("1 referenced Medications not obtained")
