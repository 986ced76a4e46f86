"""Hostile and broken input never produces a 5xx, and logs never carry tokens, patient ids or
bodies (issue 5 hardening)."""

from __future__ import annotations

import copy
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.ops.logs import JsonFormatter
from tests.support.builders import fhir_authorization
from tests.support.scenarios import SCENARIOS, request_of

SERVICE = "/cds-services/leukopenia-patient-view"
ENDPOINTS = [SERVICE, f"{SERVICE}/feedback", "/cds-services/unknown", "/cds-services"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
BASE = request_of(next(s for s in SCENARIOS if s["name"] == "sle-refractory-seed004-critical"))


@FUZZ
@given(body=json_values, endpoint=st.sampled_from(ENDPOINTS))
def test_random_json_never_gives_5xx(client, body, endpoint):
    response = client.post(endpoint, data=json.dumps(body), content_type="application/json")
    assert response.status_code < 500


def _paths(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield prefix + (index,)
            yield from _paths(item, prefix + (index,))


PATHS = list(_paths(BASE))
# An order-sign request: its draft orders are read leniently (never validated), so every
# field of them must survive any value without a 5xx.
ORDER = request_of(
    next(s for s in SCENARIOS if s["name"] == "order-sign-azathioprine-with-allopurinol-wbc-3.3")
)
ORDER_PATHS = [("context", *p) for p in _paths(ORDER["context"])]


@FUZZ
@given(path=st.sampled_from(PATHS), replacement=json_values)
def test_mutated_real_requests_never_give_5xx(client, path, replacement):
    body = copy.deepcopy(BASE)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    response = client.post(SERVICE, json=body)
    assert response.status_code < 500, path


@FUZZ
@given(raw=st.binary(max_size=200))
def test_random_bytes_never_give_5xx(client, raw):
    response = client.post(SERVICE, data=raw, content_type="application/json")
    assert response.status_code in (400, 415)


def test_logs_carry_no_token_patient_id_or_body(client, caplog):
    body = copy.deepcopy(BASE)
    body["context"]["patientId"] = "patient-7f3c9a"
    for value in body["prefetch"].values():
        for entry in (value or {}).get("entry", []):
            entry["resource"].get("subject", {})["reference"] = "Patient/patient-7f3c9a"
    body["prefetch"]["patient"]["id"] = "patient-7f3c9a"
    body["fhirServer"] = "https://ehr.example.org/fhir"
    body["fhirAuthorization"] = fhir_authorization("tok-SECRET-123")
    caplog.set_level(logging.DEBUG)
    assert client.post(SERVICE, json=body).status_code == 200
    client.post(SERVICE, json={**body, "hook": "patient-7f3c9a"})
    client.post(SERVICE, json=body, headers={"Authorization": "Bearer tok-SECRET-123"})
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    text = "\n".join(lines)
    assert "answered" in text
    for secret in ("tok-SECRET-123", "patient-7f3c9a", "Systemic lupus"):
        assert secret not in text


@FUZZ
@given(path=st.sampled_from(ORDER_PATHS), replacement=json_values)
def test_mutated_draft_orders_never_give_5xx(client, path, replacement):
    body = copy.deepcopy(ORDER)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = replacement
    response = client.post("/cds-services/leukopenia-order-sign", json=body)
    assert response.status_code < 500, path


ODD_REQUESTS = [
    ("POST", "/cds-services//feedback"),
    ("POST", "//cds-services/leukopenia-patient-view"),
    ("POST", "/cds-services/leukopenia-patient-view//feedback"),
    ("GET", "/cds-services//"),
    ("GET", "/admin"),
    ("GET", "/admin//api/stats"),
    ("PUT", "/cds-services"),
    ("DELETE", "/cds-services/leukopenia-patient-view/feedback"),
    ("GET", "/no/such/path"),
    ("POST", "/cds-services/leukopenia-patient-view/feedback/extra"),
    ("GET", "/cds-services/%0Aforged"),
]


@pytest.mark.parametrize(("method", "path"), ODD_REQUESTS)
def test_every_path_and_method_answers_json(client, method, path):
    """No HTML: no 308 redirect from `//` or to a trailing slash, no HTML 404/405 pages."""
    response = client.open(path, method=method, json={"feedback": []})
    assert response.status_code < 500
    assert response.status_code not in (301, 302, 307, 308)
    assert response.is_json, (response.status_code, response.data[:80])


@pytest.mark.parametrize(
    ("hook_instance", "status"),
    [("a" * 100, 200), ("a" * 101, 400), ("d1577c69\x00", 400), ("line\nbreak", 400)],
)
def test_hook_instance_fits_the_card_history(client, hook_instance, status):
    """hookInstance is stored with each card: a longer one (or a NUL, which PostgreSQL
    refuses) would be answered and then lost from the history with its whole batch."""
    response = client.post(SERVICE, json={**BASE, "hookInstance": hook_instance})
    assert response.status_code == status
