"""The v3 card content as a clinician reads it, on the fixture scenarios that issue 11 names
(through the HTTP API, dates moved to today)."""

from __future__ import annotations

from typing import Any

from .test_card_limits import responses


def card(scenario: str, rule: str) -> dict[str, Any]:
    [found] = [c for c in responses()[scenario]["cards"] if c["source"]["topic"]["code"] == rule]
    return found


def test_weekly_methotrexate_reads_as_prescribed() -> None:
    found = card("cards-methotrexate-weekly-wbc-3.1-dose-review", "DRUG_CYTOPENIA_DOSE_REVIEW")
    assert "Methotrexate 15 mg once weekly." in found["detail"]
    assert "hydroxychloroquine" not in found["detail"] and "lupus" not in found["detail"]


def test_critical_mycophenolate_order_card() -> None:
    found = card("order-sign-mycophenolate-new-start-anc-0.4", "ORDER_MYELOTOXIC_LOW_COUNTS")
    assert found["summary"] == (
        "Severe neutropenia (ANC 0.40): do not start mycophenolate mofetil now: cancel or defer."
    )
    assert "ANC is < 1.3 x10^9/L" in found["detail"]
    labels = [s["label"] for s in found["suggestions"]]
    assert len(labels) == 2 and labels[0].startswith("Cancel") and labels[1].startswith("Defer")
    assert not any("keep" in label.lower() for label in labels)


def test_seed004_gets_one_card_per_problem() -> None:
    cards = responses()["sle-refractory-seed004-critical"]["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == [
        "NEUTROPENIA_SEVERE",
        "REFRACTORY_LEUKOPENIA_REFERRAL",
    ]
    severe = cards[0]
    assert "ANC at most 0.05: WBC 0.05 with no differential" in severe["summary"]
    assert "ANC < 1.0" not in severe["detail"]
    assert "Mycophenolate mofetil 1000 mg twice daily" in severe["detail"]


def test_fever_in_the_nadir_window() -> None:
    found = card("cards-fever-11-days-after-cyclophosphamide-pulse-no-count", "FEBRILE_NEUTROPENIA")
    assert found["indicator"] == "critical"
    assert "no count since the cyclophosphamide dose on" in found["summary"]
    assert "delay the next pulse" in found["detail"]
    assert "Hold cyclophosphamide" not in found["detail"]


def test_febrile_cards_lead_with_the_fever() -> None:
    for scenario, rule in (
        ("cards-febrile-anc-1.2-on-methotrexate", "DRUG_CYTOPENIA_DOSE_REVIEW"),
        ("cards-febrile-wbc-2.5-no-differential", "LEUKOPENIA_MONITOR"),
    ):
        found = card(scenario, rule)
        assert found["summary"].startswith(
            "Febrile now: same-day assessment and CBC with differential stat"
        )
        assert found["indicator"] == "warning"


def test_dangerous_combinations_at_order_time_act_on_the_draft() -> None:
    tmp = card(
        "cards-order-sign-co-trimoxazole-on-weekly-methotrexate", "ORDER_MYELOTOXIC_LOW_COUNTS"
    )
    [cancel] = tmp["suggestions"]
    assert cancel["actions"][0]["type"] == "delete" and cancel.get("isRecommended")
    allo = card("cards-order-sign-allopurinol-on-azathioprine", "ORDER_MYELOTOXIC_LOW_COUNTS")
    assert "reduce azathioprine to 1/3-1/4" in allo["summary"]


def test_gcsf_dose_in_mcg_per_kg() -> None:
    found = card("cards-order-select-filgrastim-mcg-per-kg", "GCSF_CAUTION")
    assert "300 mcg once daily = 5 mcg/kg/day at 60 kg" in found["detail"]


def test_cyclophosphamide_pulse_severe_neutropenia_names_the_nadir() -> None:
    found = card("cyclophosphamide-10-days-ago-severe-neutropenia", "NEUTROPENIA_SEVERE")
    assert "nadir day 7-14" in found["detail"] and "Hold cyclophosphamide" not in found["detail"]
    assert "in SLE" not in found["detail"]


def test_the_monitoring_schedule_fits_the_patients_drug() -> None:
    """A methotrexate patient's overdue-CBC card gives methotrexate's own label schedule (v4),
    not azathioprine's."""
    found = card("methotrexate-cbc-120-days-old", "CBC_STALE")
    assert "Methotrexate label: blood counts at least monthly" in found["detail"]
    assert "Azathioprine" not in found["detail"]
    thiopurine = card("azathioprine-new-start-cbc-16-days-old", "CBC_STALE")
    assert "Azathioprine label: CBC weekly in month 1" in thiopurine["detail"]
