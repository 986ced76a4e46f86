"""NEUTROPENIA_MODERATE absorbing DRUG_CYTOPENIA_DOSE_REVIEW (v4 item 9) together with the dose
review absorbing LYMPHOPENIA_PROFOUND (v4 item 5): when the moderate card takes the dose
review's place, the lymphopenia the dose review would have carried comes along (episode, last
three ALCs, infection screen), and who decides follows the indication (transplant team,
specialist team, prescribing team) on this card and on the refractory card."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.builders import (
    ALC,
    ANC,
    AZATHIOPRINE,
    HYDROXYCHLOROQUINE,
    MYCOPHENOLATE,
    TACROLIMUS,
    WBC,
    condition,
    medication_request,
    observation,
    sle,
)

from .test_transplant_lymphopenia import ICD10, findings, text

MODERATE = "NEUTROPENIA_MODERATE"


def counts(anc: float, alc: float, days_ago: float = 1) -> list[dict[str, Any]]:
    return [
        observation(WBC, 2.6, days_ago=days_ago),
        observation(ANC, anc, days_ago=days_ago),
        observation(ALC, alc, days_ago=days_ago),
    ]


def azathioprine() -> dict[str, Any]:
    return medication_request(AZATHIOPRINE, dose_mg=100, days_ago=700)


@pytest.mark.parametrize(("alc", "carried"), [(0.49, True), (0.5, False)])
def test_the_moderate_card_carries_the_lymphopenia_of_the_absorbed_dose_review(
    alc: float, carried: bool, knowledge
) -> None:
    found = findings([sle(), azathioprine(), *counts(0.7, alc)], knowledge)
    assert MODERATE in found
    assert "DRUG_CYTOPENIA_DOSE_REVIEW" not in found
    # One card per problem: never a separate profound-lymphopenia card beside it.
    assert "LYMPHOPENIA_PROFOUND" not in found
    card = found[MODERATE]
    assert card.indicator == "warning"
    assert ("last ALCs: 0.49 on" in text(card)) is carried
    assert ("Screen for infection." in card.recommendations) is carried
    assert ("martin_sle_lymphopenia_2017" in card.sources) is carried
    if carried:
        assert "new episode (no earlier ALC in the last 12 months)" in text(card)
        # A lupus patient: the rheumatic indication's wording.
        assert card.summary.startswith("Moderate neutropenia (ANC 0.70) on azathioprine: reduce")
        assert any("withhold azathioprine and discuss" in r for r in card.recommendations)
        assert card.carries == ("DRUG_CYTOPENIA_DOSE_REVIEW", "LYMPHOPENIA_PROFOUND")


def test_without_a_tier_a_drug_the_lymphopenia_keeps_its_own_card(knowledge) -> None:
    hcq = medication_request(HYDROXYCHLOROQUINE, dose_mg=200, per_day=2, days_ago=900)
    found = findings([sle(), hcq, *counts(0.7, 0.3)], knowledge)
    assert found[MODERATE].carries == ()
    assert "last ALCs" not in text(found[MODERATE])
    assert found["LYMPHOPENIA_PROFOUND"].indicator == "warning"


def kidney_recipient(lupus: bool = False) -> list[dict[str, Any]]:
    return [
        *([sle()] if lupus else []),
        condition("Z94.0", ICD10),
        medication_request(MYCOPHENOLATE, dose_mg=1000, per_day=2, days_ago=900),
        medication_request(TACROLIMUS, dose_mg=3, per_day=2, days_ago=900),
    ]


def test_a_transplant_recipient_s_moderate_card_never_withholds(knowledge) -> None:
    card = findings([*kidney_recipient(), *counts(0.7, 0.3)], knowledge)[MODERATE]
    assert "discuss with the transplant team today" in card.summary
    words = "\n".join([card.summary, *card.recommendations]).lower()
    assert "withhold" not in words and "reduce" not in words and "hold " not in words
    assert any(line.startswith("Label advice for the transplant team") for line in card.evidence)
    assert "Transplant recipient: " in text(card)
    assert "Screen for infection." in card.recommendations


def test_an_unknown_indication_informs_the_prescribing_team(knowledge) -> None:
    card = findings([azathioprine(), *counts(0.7, 1.2)], knowledge)[MODERATE]
    assert "inform the prescribing team today" in card.summary
    assert "Inform the prescribing team today: they decide whether to change azathioprine." in (
        card.recommendations
    )
    assert "reduce or withhold" not in card.summary


def test_the_refractory_card_never_holds_a_transplant_recipient_s_drugs(knowledge) -> None:
    resources = [
        *kidney_recipient(lupus=True),
        observation(WBC, 1.7, days_ago=20),
        observation(WBC, 1.6, days_ago=1),
        observation(ANC, 0.8, days_ago=1),
    ]
    card = findings(resources, knowledge)["REFRACTORY_LEUKOPENIA_REFERRAL"]
    joined = text(card).lower()
    assert "hold or reduce" not in joined and "withhold" not in joined
    assert "discuss with the transplant team today before changing" in joined
    assert "transplant recipient: " in joined


def test_the_refractory_card_holds_or_reduces_a_lupus_patient_s_tier_a_drug(knowledge) -> None:
    resources = [
        sle(),
        medication_request(MYCOPHENOLATE, dose_mg=1000, per_day=2, days_ago=900),
        medication_request(TACROLIMUS, dose_mg=3, per_day=2, days_ago=900),
        observation(WBC, 1.7, days_ago=20),
        observation(WBC, 1.6, days_ago=1),
        observation(ANC, 0.8, days_ago=1),
    ]
    card = findings(resources, knowledge)["REFRACTORY_LEUKOPENIA_REFERRAL"]
    assert card.recommendations[0] == (
        "Drug toxicity first: hold or reduce mycophenolate mofetil with the rheumatologist; "
        "ask the rheumatologist about tacrolimus."
    )
