"""The deadline covers the whole hook call: the fetch ends at it, and reading the data and the
rules are given up 0.75 s later (HTTP 503), never answered with a partial record."""

from __future__ import annotations

import math
from time import monotonic

import orjson
import pytest
import responses

from cds_service import deadline as call_deadline
from cds_service.config import load_config
from cds_service.deadline import Deadline, DeadlinePassed
from cds_service.engine import evaluate
from cds_service.fhir.gather import PreconditionFailed
from cds_service.knowledge import load_knowledge
from cds_service.protocol.request import parse_request
from cds_service.record import build_record
from cds_service.services import load_services
from tests.support.builders import NOW, PATIENT, WBC, observation, sle
from tests.support.scenarios import SCENARIOS, request_of

SERVICE = "/cds-services/leukopenia-patient-view"
FEBRILE = request_of(
    next(s for s in SCENARIOS if s["name"] == "sle-azathioprine-febrile-neutropenia")
)
PAST = Deadline(fetch_by=-math.inf, answer_by=-math.inf)
FAR = Deadline(fetch_by=math.inf, answer_by=math.inf)


def test_the_evaluation_ends_within_a_second_after_the_fetch():
    deadline = Deadline.starting_now(2.0)
    assert deadline.answer_by - deadline.fetch_by == call_deadline.EVALUATION_GRACE == 0.75
    FAR.check("any stage")
    with pytest.raises(DeadlinePassed, match="reading"):
        PAST.check("reading")


def test_reading_stops_between_resources_once_the_deadline_has_passed():
    knowledge = load_knowledge()
    resources = [sle(), observation(WBC, 3.2)]
    assert build_record(resources, PATIENT, NOW, knowledge, deadline=FAR).latest("wbc")
    with pytest.raises(DeadlinePassed):
        build_record(resources, PATIENT, NOW, knowledge, deadline=PAST)


def test_the_fetch_ends_at_the_calls_deadline(fhir_request_mock):
    # Nothing is sent once the call's own deadline has passed (counted from its arrival, not
    # from the start of the fetch): every key is then unavailable, hence 412.
    body = {key: value for key, value in FEBRILE.items() if key != "prefetch"}
    body["fhirServer"] = "https://ehr.example.org/fhir"
    service = load_services()["leukopenia-patient-view"]
    request = parse_request(body, service.hook)
    config = load_config({"ENV": "testing"})
    late = Deadline(fetch_by=monotonic() - 1, answer_by=monotonic() + 60)
    with pytest.raises(PreconditionFailed, match="did not answer in time"):
        evaluate(service, request, load_knowledge(), config, NOW, deadline=late)
    assert len(fhir_request_mock.calls) == 0


def test_a_call_past_its_deadline_gets_a_json_503(client, monkeypatch):
    monkeypatch.setattr(call_deadline, "EVALUATION_GRACE", -5.0)  # past as soon as it starts
    response = client.post(SERVICE, data=orjson.dumps(FEBRILE), content_type="application/json")
    assert response.status_code == 503
    assert response.get_json() == {"error": "the call could not be evaluated within its deadline"}


def test_a_call_within_its_deadline_is_answered(client):
    response = client.post(SERVICE, data=orjson.dumps(FEBRILE), content_type="application/json")
    assert response.status_code == 200
    assert "FEBRILE_NEUTROPENIA" in [c["source"]["topic"]["code"] for c in response.json["cards"]]


@pytest.fixture
def fhir_request_mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
