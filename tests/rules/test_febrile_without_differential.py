"""Febrile neutropenia with a WBC below the febrile-neutropenia ANC cut-off and no differential
(clinical rules §2.4 v4): it is febrile neutropenia, not "possible"; a censored WBC keeps its
sign ("WBC < 0.5", never "0.50"); no formula ("ANC at most 0.05: WBC 0.05 with no
differential")."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.builders import WBC, observation, sle, temperature
from tests.support.findings import findings


def censored_wbc(value: float, comparator: str = "<") -> dict[str, Any]:
    wbc = observation(WBC, value)
    wbc["valueQuantity"]["comparator"] = comparator
    return wbc


@pytest.mark.parametrize(
    ("wbc", "possible"),
    [(0.8, False), (0.99, False), (1.0, True), (1.99, True)],
)
def test_a_wbc_below_the_cut_off_is_febrile_neutropenia_not_possible(wbc, possible, knowledge):
    found = findings([sle(), observation(WBC, wbc), temperature(38.6, 1)], knowledge)
    summary = found["FEBRILE_NEUTROPENIA"].summary
    assert summary.startswith("Possible febrile neutropenia") is possible
    if not possible:
        shown = f"{wbc:.2f}"
        assert summary.startswith(
            f"Febrile neutropenia: ANC below {shown} (WBC {shown}, no differential yet)"
        )
    assert len(summary) < 140


def test_the_cut_off_is_the_setting(knowledge):
    from cds_service.knowledge import load_knowledge

    strict = load_knowledge({"febrile_neutropenia_anc": 0.5})
    found = findings([sle(), observation(WBC, 0.8), temperature(38.6, 1)], strict)
    assert found["FEBRILE_NEUTROPENIA"].summary.startswith("Possible febrile neutropenia")
    assert knowledge.threshold("febrile_neutropenia_anc") == 1.0


def test_a_censored_wbc_keeps_its_sign(knowledge):
    found = findings([sle(), censored_wbc(0.5), temperature(38.6, 1)], knowledge)
    card = found["FEBRILE_NEUTROPENIA"]
    assert "ANC below 0.5 (WBC < 0.5, no differential yet)" in card.summary
    assert "0.50" not in card.summary + " ".join(card.evidence)


def test_afebrile_censored_wbc_is_worded_without_a_formula(knowledge):
    found = findings([sle(), censored_wbc(0.5)], knowledge)
    severe = found["NEUTROPENIA_SEVERE"]
    assert severe.summary.startswith("ANC below 0.5: WBC < 0.5 with no differential")
    at_most = findings([sle(), censored_wbc(0.5, "<=")], knowledge)["NEUTROPENIA_SEVERE"]
    assert at_most.summary.startswith("ANC at most 0.5: WBC at most 0.5 with no differential")
    for card in (severe, at_most):
        text = card.summary + " ".join(card.evidence + card.recommendations)
        assert "<=" not in text and ">=" not in text and "0.50" not in text


def test_a_censored_count_keeps_its_sign_on_the_dose_review_card(knowledge):
    from tests.support.builders import AZATHIOPRINE, medication_request

    resources = [sle(), medication_request(AZATHIOPRINE, dose_mg=100, days_ago=400)]
    card = findings(resources + [censored_wbc(3.0)], knowledge)["DRUG_CYTOPENIA_DOSE_REVIEW"]
    assert card.summary == "Review azathioprine: WBC < 3 x10^9/L, below 3.5."
    assert "3.00" not in card.summary + " ".join(card.evidence)
