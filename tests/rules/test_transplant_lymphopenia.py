"""Transplant recipients and lymphopenia episodes on a tier A drug (clinical rules §3 wording
v4). The reproduced bug: a transplant recipient told to withhold mycophenolate for a chronic,
stable ALC around 0.4 at every visit, with no trend shown."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.record import build_record
from tests.support.builders import (
    ALC,
    ANC,
    MYCOPHENOLATE,
    NOW,
    PATIENT,
    TACROLIMUS,
    WBC,
    condition,
    medication_request,
    observation,
    sle,
)
from tests.support.findings import findings

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RULE = "DRUG_CYTOPENIA_DOSE_REVIEW"


def text(finding) -> str:
    return "\n".join([finding.summary, *finding.evidence, *finding.recommendations])


def kidney_recipient() -> list[dict[str, Any]]:
    return [
        condition("Z94.0", ICD10),
        medication_request(MYCOPHENOLATE, dose_mg=1000, per_day=2, days_ago=900),
        medication_request(TACROLIMUS, dose_mg=3, per_day=2, days_ago=900),
    ]


def alcs(*values_days: tuple[float, float]) -> list[dict[str, Any]]:
    """ALC results with a normal WBC and ANC of the same day (only the ALC is low)."""
    found = []
    for value, days in values_days:
        found += [
            observation(ALC, value, days_ago=days),
            observation(WBC, 5.5, days_ago=days),
            observation(ANC, 3.8, days_ago=days),
        ]
    return found


@pytest.mark.parametrize(
    ("code", "system", "transplant"),
    [
        ("Z94.0", ICD10, True),
        ("Z94.4", ICD10, True),
        ("Z94.84", ICD10, True),  # stem cells
        ("T86.11", ICD10, True),  # kidney transplant rejection
        ("T86.811", ICD10, True),  # lung transplant failure
        ("T86.5", ICD10, True),
        ("Z94.5", ICD10, False),  # skin graft
        ("Z94.7", ICD10, False),  # cornea
        ("T86.821", ICD10, False),  # skin graft failure
        ("T86.841", ICD10, False),  # corneal transplant failure
        ("Z98.85", ICD10, False),  # transplanted organ removed
        ("161665007", "http://snomed.info/sct", True),
        ("737295003", "http://snomed.info/sct", True),
    ],
)
def test_the_transplant_value_set(code, system, transplant, knowledge):
    record = build_record([condition(code, system)], PATIENT, NOW, knowledge)
    assert (record.transplant is not None) is transplant


def test_a_stable_chronic_lymphopenia_in_a_transplant_recipient_is_one_info_card(knowledge):
    resources = kidney_recipient() + alcs((0.41, 150), (0.40, 100), (0.42, 45), (0.40, 2))
    found = findings(resources, knowledge)
    assert "LYMPHOPENIA_PROFOUND" not in found  # absorbed: one card
    card = found[RULE]
    assert card.indicator == "info"
    assert card.summary.startswith("Stable lymphopenia on mycophenolate mofetil (ALC 0.40")
    assert "withhold" not in text(card).lower() and "hold " not in text(card).lower()
    assert "transplant team" in text(card)
    # The trend: the last three ALC values with their dates.
    assert "0.40 on 2026-01-13, 0.42 on 2025-12-01, 0.40 on 2025-10-07" in text(card)
    assert "duffy-null" not in card.override_reasons


def test_a_new_episode_in_a_transplant_recipient_asks_the_transplant_team_today(knowledge):
    card = findings(kidney_recipient() + alcs((0.8, 60), (0.4, 2)), knowledge)[RULE]
    assert card.indicator == "warning"
    assert "discuss with the transplant team today" in card.summary
    joined = text(card)
    assert "tacrolimus / mycophenolate mofetil" in joined or (
        "mycophenolate mofetil / tacrolimus" in joined
    )
    assert "withhold" not in joined.lower()
    assert "Screen for infection." in card.recommendations


@pytest.mark.parametrize(
    ("history", "indicator"),
    [
        ([], "warning"),  # no earlier ALC: a new episode
        ([(0.5, 30)], "warning"),  # first < 0.5 after 0.5 (the edge is >= 0.5)
        ([(0.49, 100), (0.49, 30)], "info"),  # below 0.5 for over 3 months, no fall
        ([(0.49, 89), (0.49, 30)], "warning"),  # not yet 3 months: not known to be stable
        ([(0.49, 90), (0.49, 30)], "info"),  # exactly 3 months
        ([(0.6, 400), (0.49, 100), (0.49, 30)], "info"),  # 0.6 is older than 12 months
    ],
)
def test_episode_grading_at_its_edges(history, indicator, knowledge):
    resources = kidney_recipient() + alcs(*history, (0.45, 0))
    assert findings(resources, knowledge)[RULE].indicator == indicator


@pytest.mark.parametrize(
    ("latest", "indicator"),
    [
        (0.28, "warning"),  # a 30% fall from 0.40
        (0.29, "info"),  # 27.5%: no such fall
        (0.19, "warning"),  # below 0.2 even when stable
        (0.2, "info"),  # 0.2 itself is not below 0.2 (and 0.2 from 0.28 is 28.6%)
    ],
)
def test_a_fall_of_30_percent_or_an_alc_below_0_2_is_a_warning(latest, indicator, knowledge):
    history = [(0.40, 150), (0.40, 100)] if latest != 0.2 else [(0.28, 150), (0.28, 100)]
    resources = kidney_recipient() + alcs(*history, (latest, 0))
    assert findings(resources, knowledge)[RULE].indicator == indicator


def test_rheumatic_patients_get_the_bsr_withhold_advice(knowledge):
    resources = [
        sle(),
        medication_request(MYCOPHENOLATE, dose_mg=1000, per_day=2, days_ago=900),
        *alcs((0.8, 60), (0.4, 2)),
    ]
    card = findings(resources, knowledge)[RULE]
    assert "withhold mycophenolate mofetil and discuss with the specialist team" in text(card)
    assert card.summary == "Review mycophenolate mofetil: ALC 0.40 < 0.5 x10^9/L (new episode)."


def test_an_unknown_indication_informs_the_prescribing_team(knowledge):
    resources = [
        condition("408335007"),  # autoimmune hepatitis: not rheumatic, not a transplant
        medication_request(MYCOPHENOLATE, dose_mg=1000, per_day=2, days_ago=900),
        *alcs((0.8, 60), (0.4, 2)),
    ]
    card = findings(resources, knowledge)[RULE]
    assert "inform the prescribing team" in card.summary
    assert "withhold" not in text(card).lower()


def test_a_transplant_recipient_with_a_low_anc_is_not_told_to_interrupt(knowledge):
    resources = kidney_recipient() + [observation(WBC, 3.0), observation(ANC, 1.2)]
    card = findings(resources, knowledge)[RULE]
    recommendations = " ".join(card.recommendations).lower()
    assert "interrupt" not in recommendations and "withhold" not in recommendations
    assert "discuss with the transplant team today" in recommendations
    assert any(line.startswith("Label advice for the transplant team") for line in card.evidence)


def test_severe_neutropenia_in_a_transplant_recipient_holds_nothing_on_its_own(knowledge):
    resources = kidney_recipient() + [observation(WBC, 1.6), observation(ANC, 0.3)]
    card = findings(resources, knowledge)["NEUTROPENIA_SEVERE"]
    joined = " ".join(card.recommendations)
    assert "Hold " not in joined
    assert "Discuss with the transplant team today before changing" in joined


def test_profound_lymphopenia_on_tacrolimus_alone_reviews_with_the_transplant_team(knowledge):
    resources = [
        condition("Z94.0", ICD10),
        medication_request(TACROLIMUS, dose_mg=3, per_day=2, days_ago=900),
        *alcs((0.9, 60), (0.4, 1)),
    ]
    card = findings(resources, knowledge)["LYMPHOPENIA_PROFOUND"]  # tier B: no dose review
    assert any("with the transplant team" in line for line in card.recommendations)
