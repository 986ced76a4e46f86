"""Issue 24: a fhirServer allowlist entry cannot be left with `..`, and `next` links and
Medication URLs stay on fhirServer's base path, not merely its origin."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import responses

from cds_service.config import load_config
from cds_service.fhir.gather import gather
from cds_service.fhir.links import fhir_server_allowed, on_server

from .conftest import CONTEXT, full_prefetch, resource, searchset

BASE = "https://ehr.example.org/fhir/tenant-a"
TOKEN = "secret-ehr-token-77c2"
ALLOWED = {"fhir_servers": [BASE]}

ESCAPES = {
    "dot-dot": "https://ehr.example.org/fhir/tenant-a/../tenant-b",
    "dot-dot at the end": "https://ehr.example.org/fhir/tenant-a/..",
    "encoded dot-dot": "https://ehr.example.org/fhir/tenant-a/%2e%2e/tenant-b",
    "mixed dot-dot": "https://ehr.example.org/fhir/tenant-a/.%2E/tenant-b",
    "dot": "https://ehr.example.org/fhir/tenant-a/./x",
    "encoded slash": "https://ehr.example.org/fhir/tenant-a%2f..%2ftenant-b",
    "encoded backslash": "https://ehr.example.org/fhir/tenant-a/..%5ctenant-b",
    "double slash dot-dot": "https://ehr.example.org/fhir/tenant-a//../../admin",
}


@pytest.mark.parametrize("url", ESCAPES.values(), ids=ESCAPES.keys())
def test_dot_segments_cannot_leave_an_allowlisted_path(url):
    assert not fhir_server_allowed(url, ALLOWED, None)


def test_plain_paths_below_the_entry_are_still_allowed():
    assert fhir_server_allowed(BASE, ALLOWED, None)
    assert fhir_server_allowed(BASE + "/r4", ALLOWED, None)
    assert fhir_server_allowed(BASE + "/..x/r4", ALLOWED, None)  # not a dot segment


def test_links_must_stay_below_the_base_path():
    assert on_server(BASE + "/Condition?page=2", BASE)
    assert on_server(BASE + "?_getpages=abc&_getpagesoffset=200", BASE)  # HAPI's next links
    assert on_server("HTTPS://EHR.example.org:443/fhir/tenant-a/Medication/m1", BASE)
    for url in (
        "https://ehr.example.org/fhir/tenant-b/Condition?page=2",
        "https://ehr.example.org/fhir/tenant-ab/Condition",
        "https://ehr.example.org/admin/Condition",
        "https://ehr.example.org/",
        *ESCAPES.values(),
    ):
        assert not on_server(url, BASE), url


@pytest.fixture
def anywhere() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(re.compile(r".*"), json=searchset(), content_type="application/fhir+json")
        yield mock


@pytest.mark.parametrize(
    "link",
    [
        "https://ehr.example.org/fhir/tenant-b/Condition?page=2",
        "https://ehr.example.org/fhir/tenant-a/../tenant-b/Condition?page=2",
    ],
)
def test_a_next_link_to_another_base_path_is_not_followed(templates, anywhere, link):
    config = load_config({"ENV": "testing"})
    first = searchset(resource("Condition", "c1"), next_url=link)
    prefetch = full_prefetch(templates) | {"conditions": first}
    gathered = gather(templates, CONTEXT, prefetch, BASE, TOKEN, config)
    assert len(anywhere.calls) == 0
    assert "outside fhirServer" in gathered.incomplete["conditions"]


def test_a_medication_on_another_base_path_is_not_read(templates, anywhere):
    config = load_config({"ENV": "testing"})
    reference = "https://ehr.example.org/fhir/tenant-b/Medication/m2"
    request = resource("MedicationRequest", "rx1", medicationReference={"reference": reference})
    prefetch = full_prefetch(templates) | {"medicationRequests": searchset(request)}
    gathered = gather(templates, CONTEXT, prefetch, BASE, TOKEN, config)
    assert len(anywhere.calls) == 0
    assert "medications" in gathered.incomplete | gathered.unavailable
