"""The v4 cards of issue 23 (rules-b items) as a clinician reads them, on the fixture scenarios
that reproduce each reported case (through the HTTP API, dates moved to today)."""

from __future__ import annotations

from typing import Any

import pytest

from .test_card_limits import responses
from .test_v3_fixture_wording import card


def _cards(scenario: str) -> list[dict[str, Any]]:
    return responses()[scenario]["cards"]


def _creates(card_: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        action["resource"]
        for suggestion in card_.get("suggestions", [])
        for action in suggestion["actions"]
        if action["type"] == "create"
    ]


def test_azathioprine_drafted_in_febrile_neutropenia_is_critical_and_first() -> None:
    cards = _cards("v4-order-sign-azathioprine-febrile-neutropenia-anc-0.6")
    assert [c["source"]["topic"]["code"] for c in cards] == [
        "ORDER_MYELOTOXIC_LOW_COUNTS",
        "FEBRILE_NEUTROPENIA",
    ]
    order, febrile = cards
    assert order["indicator"] == "critical"
    assert order["summary"] == (
        "Febrile neutropenia (ANC 0.60): do not start azathioprine now: cancel or defer."
    )
    labels = [s["label"] for s in order["suggestions"]]
    assert labels == [
        "Cancel the azathioprine order and order CBC with differential (stat)",
        "Defer: put the azathioprine order on hold and order CBC with differential (stat)",
    ]
    assert all(r["code"]["coding"][0]["code"] != "57021-8" for r in _creates(febrile))
    assert "CBC order offered on the card above." in febrile["detail"]
    # Cancel or defer, never "reduce": a smaller dose is no answer to febrile neutropenia.
    assert "Do not start azathioprine before the counts recover." in order["detail"]
    assert "reduce" not in order["detail"].lower()


def test_moderate_neutropenia_on_azathioprine_is_one_card_with_the_drug() -> None:
    [moderate] = _cards("v4-moderate-neutropenia-on-azathioprine-one-card")
    assert moderate["summary"].startswith("Moderate neutropenia (ANC 0.70) on azathioprine")
    assert "= 1.52 mg/kg/day at 66 kg" in moderate["detail"]
    assert "reduce the dose or withdraw temporarily (label)" in moderate["detail"]
    assert "duffy-null" not in {r["code"] for r in moderate["overrideReasons"]}


def test_a_13_year_old_with_severe_neutropenia_at_day_60_gets_the_genotype_urgently() -> None:
    pgx = card("v4-azathioprine-day-60-severe-neutropenia-no-tpmt-13-years", "THIOPURINE_PGX")
    assert pgx["indicator"] == "warning"
    assert "test before or early in therapy" not in pgx["summary"]
    [test] = _creates(pgx)
    assert test["priority"] == "urgent" and test["code"]["coding"][0]["code"] == "93193-1"
    assert "picture of TPMT/NUDT15 deficiency" in pgx["detail"]
    severe = card(
        "v4-azathioprine-day-60-severe-neutropenia-no-tpmt-13-years", "NEUTROPENIA_SEVERE"
    )
    assert severe["detail"].count("genotype TPMT and NUDT15 urgently") == 1


def test_only_nudt15_intermediate_with_the_dose_in_range_is_info_and_never_reduce() -> None:
    pgx = card("v4-pgx-nudt15-intermediate-dose-within-cpic-range", "THIOPURINE_PGX")
    assert pgx["indicator"] == "info"
    assert pgx["summary"].startswith("NUDT15 intermediate, TPMT normal: azathioprine 1.61")
    text = pgx["summary"] + pgx["detail"]
    assert "TPMT and NUDT15 intermediate" not in text and "reduce" not in text.lower()
    assert "20-50%" not in text and "0.6-2.4 mg/kg/day" in text
    review = card("v4-pgx-nudt15-intermediate-dose-within-cpic-range", "DRUG_CYTOPENIA_DOSE_REVIEW")
    assert "TPMT" not in review["detail"]  # a result is on file: no test asked for
    assert all(r["code"]["coding"][0]["code"] != "93193-1" for r in _creates(review))


def test_rituximab_150_days_ago_is_the_suspect() -> None:
    refractory = card(
        "v4-refractory-rituximab-150-days-ago-is-the-suspect", "REFRACTORY_LEUKOPENIA_REFERRAL"
    )
    assert "Late-onset neutropenia after rituximab" in refractory["source"]["label"]
    linked = [link["url"] for link in refractory.get("links", [])]
    assert "https://doi.org/10.1080/25785826.2025.2563427" not in linked
    detail = refractory["detail"]
    assert "375 mg/m2" not in detail and "hold or reduce rituximab" not in detail.lower()
    assert "Rituximab, last infusion " in detail and "(150 days ago)" in detail


def test_a_duffy_null_fall_is_the_decisive_criterion() -> None:
    review = card("v4-duffy-null-methotrexate-anc-fall-quoted", "DRUG_CYTOPENIA_DOSE_REVIEW")
    assert review["summary"].startswith("Review methotrexate: ANC 1.30 fell 38% from the 6-month")
    assert "duffy-null" not in {r["code"] for r in review["overrideReasons"]}


@pytest.mark.parametrize(
    "scenario",
    [
        "v4-order-sign-leflunomide-sle-never-the-azathioprine-schedule",
        "v4-order-sign-leflunomide-no-recent-cbc",  # rules-a's case (rheumatoid arthritis)
    ],
)
def test_a_leflunomide_card_never_quotes_the_azathioprine_schedule(scenario: str) -> None:
    found = card(scenario, "ORDER_NO_RECENT_CBC")
    assert "azathioprine" not in found["detail"].lower()
    assert "leflunomide" in found["detail"].lower()
