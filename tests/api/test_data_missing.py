"""Missing is not absent (clinical rules §1.2, §2.6 v4): when a kind of data could not be read,
no rule speaks from its absence, and one DATA_QUALITY warning comes first naming the data and
what to check, citing no units standard, with a CBC only for missing counts on a tier A drug."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import responses

from cds_service.record.missing import DATA_KINDS
from cds_service.rules.unreadable import SILENT_WITHOUT
from tests.support.builders import fhir_authorization
from tests.support.scenarios import SCENARIOS, call, cards_by_rule, request_of

FHIR_SERVER = "https://ehr.example.org/fhir"
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "timeout", "diagnostics": "query timed out"}],
}
# What the data-missing card calls each kind, and phrases that would read its absence.
WORDS = {
    "counts": "Blood counts",
    "temperatures": "Temperatures",
    "medications": "Medication records",
    "conditions": "Diagnoses",
    "phenotypes": "TPMT/NUDT15 and Duffy results",
    "weights": "Body weights",
}
ABSENCE = {
    "counts": ("no WBC", "No WBC"),
    "temperatures": ("No febrile neutropenia found",),
    "phenotypes": ("No TPMT", "no TPMT", "Order TPMT and NUDT15 testing"),
    "weights": ("no body weight on file",),
    "medications": (),
    "conditions": (),
}
TIER_A_IN_ALL = "sle-azathioprine-febrile-neutropenia"


def scenario(name: str) -> dict[str, Any]:
    return next(s for s in SCENARIOS if s["name"] == name)


def unreadable(body: dict[str, Any], kind: str) -> dict[str, Any]:
    """The request with every prefetch key of `kind` replaced by an OperationOutcome (the EHR
    could not get it) and no FHIR server to read it from."""
    body = copy.deepcopy(body)
    for key in body["prefetch"]:
        if DATA_KINDS.get(key) == kind:
            body["prefetch"][key] = OUTCOME
    return body


def check_data_missing_card(cards: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    first = cards[0]
    assert first["source"]["topic"]["code"] == "DATA_QUALITY"
    assert first["indicator"] == "warning"
    assert first["summary"].startswith(WORDS[kind])
    assert "could not be read from the EHR" in first["summary"]
    assert [c["source"]["topic"]["code"] for c in cards].count("DATA_QUALITY") == 1
    # No units standard for missing data (UCUM only beside a result with a unit problem).
    assert "UCUM" not in first["source"]["label"]
    if "Could not use" not in first["detail"]:
        assert not any("UCUM" in link["label"] for link in first.get("links", []))
    return first


def cbc_offered(card: dict[str, Any]) -> bool:
    return any("CBC" in s["label"] for s in card.get("suggestions", []))


# One fixture scenario where each rule fires with the full data, per kind it would read as
# absent (clinical rules §3 catalogue; fixtures/scenarios.json).
SILENCED = [
    (rule, kind, next(s["name"] for s in SCENARIOS if rule in {e["rule"] for e in s["expected"]}))
    for rule, kinds in sorted(SILENT_WITHOUT.items())
    for kind in sorted(kinds)
]


@pytest.mark.parametrize(
    ("rule", "kind", "name"), SILENCED, ids=[f"{r}-{k}" for r, k, _ in SILENCED]
)
def test_a_rule_is_silent_when_data_it_would_read_as_absent_could_not_be_read(
    client, rule, kind, name
):
    body = request_of(scenario(name))
    status, full = call(client, body)
    assert status == 200 and rule in cards_by_rule(full["cards"])
    status, answer = call(client, unreadable(body, kind))
    assert status == 200
    assert rule not in cards_by_rule(answer["cards"])
    check_data_missing_card(answer["cards"], kind)


@pytest.mark.parametrize("kind", sorted(WORDS))
def test_no_card_reads_data_that_could_not_be_read_as_absent(client, kind):
    """Every fixture scenario with each kind of data unreadable in turn."""
    for each in SCENARIOS:
        body = request_of(each)
        if not any(DATA_KINDS.get(key) == kind for key in body["prefetch"]):
            continue  # the hook does not read this kind
        status, answer = call(client, unreadable(body, kind))
        assert status == 200, each["name"]
        cards = answer["cards"]
        first = check_data_missing_card(cards, kind)
        for card in cards:
            rule = card["source"]["topic"]["code"]
            assert kind not in SILENT_WITHOUT[rule], (each["name"], rule)
            text = f"{card['summary']}\n{card.get('detail', '')}"
            assert not [p for p in ABSENCE[kind] if p in text], (each["name"], rule, text)
        if kind != "counts":
            assert not cbc_offered(first), each["name"]


@responses.activate
def test_counts_unreadable_for_a_febrile_patient_on_azathioprine(client):
    # The reproduced case: the FHIR server answered 500 for the counts, and the first card said
    # "CBC monitoring overdue ... no WBC on file" for a febrile patient with an ANC of 0.60.
    body = request_of(scenario(TIER_A_IN_ALL))
    del body["prefetch"]["counts"]
    body["fhirServer"] = FHIR_SERVER
    body["fhirAuthorization"] = fhir_authorization("a-token")
    responses.add(responses.GET, re.compile(r"https://ehr\.example\.org/fhir/.*"), status=500)
    status, answer = call(client, body)
    assert status == 200
    cards = answer["cards"]
    first = check_data_missing_card(cards, "counts")
    assert first["summary"] == (
        "Blood counts could not be read from the EHR: check the latest counts before acting on "
        "azathioprine."
    )
    assert "CBC_STALE" not in cards_by_rule(cards)
    assert not any("no WBC" in f"{c['summary']} {c['detail']}" for c in cards)
    # The patient is febrile on a tier A drug: the CBC is offered, stat.
    [cbc] = [s for s in first["suggestions"] if "CBC" in s["label"]]
    assert "stat" in cbc["label"]


def test_counts_unreadable_without_a_tier_a_drug_offers_no_cbc(client):
    name = "v3-wbc-1.8-without-unit-resolve-today"  # SLE on hydroxychloroquine only
    status, answer = call(client, unreadable(request_of(scenario(name)), "counts"))
    assert status == 200
    first = check_data_missing_card(answer["cards"], "counts")
    assert not cbc_offered(first)


def test_a_history_cut_short_names_the_date(client):
    # The counts' next page could not be read and the first page covers only 3 months.
    body = request_of(scenario(TIER_A_IN_ALL))
    counts = body["prefetch"]["counts"]
    counts["link"] = [{"relation": "next", "url": f"{FHIR_SERVER}/Observation?page=2"}]
    dates = sorted(e["resource"]["effectiveDateTime"] for e in counts["entry"])
    status, answer = call(client, body)
    assert status == 200
    first = answer["cards"][0]
    cut = dates[0][:10]
    if first["source"]["topic"]["code"] != "DATA_QUALITY":
        pytest.fail(f"the first card is {first['source']['topic']['code']}")
    assert first["summary"].startswith(f"Blood counts before {cut} could not be read")


def test_records_of_another_patient_are_said_first_and_silence_nothing(client):
    body = request_of(scenario(TIER_A_IN_ALL))
    full = cards_by_rule(call(client, copy.deepcopy(body))[1]["cards"])
    stray = copy.deepcopy(body["prefetch"]["conditions"]["entry"][0])
    stray["resource"]["id"] = "someone-else"
    stray["resource"]["subject"] = {"reference": "Patient/someone-else"}
    body["prefetch"]["conditions"]["entry"].append(stray)
    status, answer = call(client, body)
    assert status == 200
    first = answer["cards"][0]
    assert first["source"]["topic"]["code"] == "DATA_QUALITY"
    assert first["summary"].startswith("Records of another patient were sent and ignored")
    assert "FEBRILE_NEUTROPENIA" in full and "FEBRILE_NEUTROPENIA" in cards_by_rule(answer["cards"])
