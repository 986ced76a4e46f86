"""Each patient-view rule at its threshold edges (clinical rules §2.4, §3)."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.record import build_record
from cds_service.rules import RULES, evaluate_rules
from tests.support.builders import (
    ALC,
    ANC,
    AZATHIOPRINE,
    HYDROXYCHLOROQUINE,
    METHOTREXATE,
    MYCOPHENOLATE,
    NOW,
    PATIENT,
    PREDNISONE,
    TACROLIMUS,
    WBC,
    condition,
    medication_request,
    observation,
    sle,
    temperature,
    when,
)


def fired(resources: list[dict[str, Any]], knowledge, **settings) -> dict[str, str]:
    record = build_record(resources, PATIENT, NOW, knowledge)
    findings = evaluate_rules(record, knowledge, "patient-view", RULES)
    rules = [f.rule for f in findings]
    assert len(rules) == len(set(rules)), "one card per rule"
    return {f.rule: f.indicator for f in findings}


@pytest.mark.parametrize(
    ("anc", "expected"),
    [
        (0.49, {"NEUTROPENIA_SEVERE": "critical"}),
        (0.5, {"NEUTROPENIA_MODERATE": "warning"}),
        (0.99, {"NEUTROPENIA_MODERATE": "warning"}),
        (1.0, {}),
    ],
)
def test_neutropenia_grades_at_their_edges(anc, expected, knowledge):
    cards = fired([sle(), observation(WBC, 4.5), observation(ANC, anc)], knowledge)
    assert {k: v for k, v in cards.items() if k.startswith("NEUTROPENIA")} == expected


@pytest.mark.parametrize(("celsius", "febrile"), [(38.29, False), (38.3, True), (39.0, True)])
def test_single_temperature_fever_threshold(celsius, febrile, knowledge):
    cards = fired(
        [sle(), observation(WBC, 3.0), observation(ANC, 0.8), temperature(celsius, hours_ago=1)],
        knowledge,
    )
    assert ("FEBRILE_NEUTROPENIA" in cards) is febrile
    # Fever takes precedence over the neutropenia grade cards.
    assert ("NEUTROPENIA_MODERATE" in cards) is not febrile


@pytest.mark.parametrize(("minutes_apart", "febrile"), [(59, False), (60, True)])
def test_sustained_fever_needs_an_hour(minutes_apart, febrile, knowledge):
    readings = [temperature(38.0, hours_ago=2), temperature(38.1, hours_ago=2 - minutes_apart / 60)]
    cards = fired([sle(), observation(WBC, 3.0), observation(ANC, 0.8), *readings], knowledge)
    assert ("FEBRILE_NEUTROPENIA" in cards) is febrile


def test_a_lower_reading_between_breaks_sustained_fever(knowledge):
    readings = [
        temperature(38.0, hours_ago=3),
        temperature(37.2, hours_ago=2.5),
        temperature(38.0, hours_ago=1.5),
    ]
    cards = fired([sle(), observation(WBC, 3.0), observation(ANC, 0.8), *readings], knowledge)
    assert "FEBRILE_NEUTROPENIA" not in cards


def test_fever_older_than_24_hours_does_not_count(knowledge):
    cards = fired([sle(), observation(ANC, 0.8), temperature(39.0, hours_ago=25)], knowledge)
    assert "FEBRILE_NEUTROPENIA" not in cards and cards["NEUTROPENIA_MODERATE"] == "warning"


def test_fahrenheit_fever_is_converted(knowledge):
    cards = fired([sle(), observation(ANC, 0.8), temperature(101.0, 1, "[degF]")], knowledge)
    assert cards.get("FEBRILE_NEUTROPENIA") == "critical"


@pytest.mark.parametrize(("wbc", "febrile"), [(1.99, True), (2.0, False)])
def test_febrile_with_anc_unknown_uses_wbc_below_two(wbc, febrile, knowledge):
    cards = fired([sle(), observation(WBC, wbc), temperature(38.6, 1)], knowledge)
    assert ("FEBRILE_NEUTROPENIA" in cards) is febrile


@pytest.mark.parametrize(
    ("wbc", "rule"), [(0.99, "NEUTROPENIA_SEVERE"), (1.0, "LEUKOPENIA_MONITOR")]
)
def test_wbc_below_one_without_differential_is_severe(wbc, rule, knowledge):
    cards = fired([sle(), observation(WBC, wbc)], knowledge)
    assert rule in cards
    if rule == "LEUKOPENIA_MONITOR":
        assert cards[rule] == "warning"  # variant (b): WBC 1.0 to < 2.0, ANC unknown


def test_a_wbc_of_50_per_microlitre_is_never_read_as_50_thousand(knowledge):
    cards = fired([sle(), observation(WBC, 50, "/uL")], knowledge)
    assert cards == {"NEUTROPENIA_SEVERE": "critical"}


@pytest.mark.parametrize(
    ("wbc", "expected"),
    [(1.99, "warning"), (2.0, "info"), (3.99, "info"), (4.0, None)],
)
def test_leukopenia_monitor_edges_in_sle(wbc, expected, knowledge):
    cards = fired([sle(), observation(WBC, wbc), observation(ANC, 1.6)], knowledge)
    if wbc < 2.0:
        # ANC known (1.6): variant (b) needs an unknown ANC, so nothing at 1.99 with ANC 1.6.
        assert "LEUKOPENIA_MONITOR" not in cards
    else:
        assert cards.get("LEUKOPENIA_MONITOR") == expected


def test_lab_lower_limit_raises_the_leukopenia_threshold(knowledge):
    cards = fired([sle(), observation(WBC, 4.2, low=4.5)], knowledge)
    assert cards.get("LEUKOPENIA_MONITOR") == "info"


def test_low_value_followed_by_normal_value_gives_no_card(knowledge):
    cards = fired(
        [sle(), observation(WBC, 2.5, days_ago=20), observation(WBC, 5.5, days_ago=2)], knowledge
    )
    assert cards == {}


@pytest.mark.parametrize(
    ("wbc", "anc", "indicator"),
    [
        (3.49, 2.0, "warning"),
        (3.5, 2.0, "info"),
        (3.99, 2.0, "info"),
        (4.0, 2.0, None),
        (5.0, 1.49, "warning"),
        (5.0, 1.5, None),
    ],
)
def test_dose_review_on_azathioprine(wbc, anc, indicator, knowledge):
    resources = [
        sle(),
        medication_request(AZATHIOPRINE, days_ago=400),
        observation(WBC, wbc),
        observation(ANC, anc),
    ]
    assert fired(resources, knowledge).get("DRUG_CYTOPENIA_DOSE_REVIEW") == indicator


@pytest.mark.parametrize(("anc", "indicator"), [(1.29, "warning"), (1.3, None)])
def test_mycophenolate_anc_threshold_is_1_3(anc, indicator, knowledge):
    resources = [
        medication_request(MYCOPHENOLATE, days_ago=400),
        observation(WBC, 4.5),
        observation(ANC, anc),
    ]
    assert fired(resources, knowledge).get("DRUG_CYTOPENIA_DOSE_REVIEW") == indicator


def test_significant_drop_from_median_triggers_dose_review(knowledge):
    history = [observation(WBC, 8.0, days_ago=d) for d in (150, 120, 90, 60)]
    resources = [
        medication_request(METHOTREXATE, days_ago=400),
        *history,
        observation(WBC, 3.8, low=4.0),
        observation(ANC, 2.5),
    ]
    cards = fired(resources, knowledge)
    assert cards["DRUG_CYTOPENIA_DOSE_REVIEW"] == "warning"


def test_thiopurine_with_allopurinol_is_a_dangerous_combination(knowledge):
    resources = [
        medication_request(AZATHIOPRINE, days_ago=400),
        medication_request(None, text="Allopurinol 100 mg tablet", days_ago=10),
        observation(WBC, 6.0),
        observation(ANC, 3.0),
    ]
    assert fired(resources, knowledge)["DRUG_CYTOPENIA_DOSE_REVIEW"] == "warning"


def test_hydroxychloroquine_is_never_suggested_for_stopping(knowledge):
    resources = [sle(), medication_request(HYDROXYCHLOROQUINE), observation(WBC, 3.2)]
    record = build_record(resources, PATIENT, NOW, knowledge)
    for finding in evaluate_rules(record, knowledge, "patient-view", RULES):
        text = " ".join(finding.recommendations).lower()
        assert "stop hydroxychloroquine" not in text
        assert "keep hydroxychloroquine" in text


@pytest.mark.parametrize(("alc", "indicator"), [(0.49, "warning"), (0.5, None)])
def test_profound_lymphopenia_in_sle(alc, indicator, knowledge):
    cards = fired([sle(), observation(WBC, 4.5), observation(ALC, alc)], knowledge)
    assert cards.get("LYMPHOPENIA_PROFOUND") == indicator


def test_profound_lymphopenia_outside_sle_only_for_a_new_episode(knowledge):
    base = [medication_request(TACROLIMUS), observation(WBC, 4.5)]
    new = fired(base + [observation(ALC, 0.9, days_ago=30), observation(ALC, 0.4)], knowledge)
    continuing = fired(
        base + [observation(ALC, 0.45, days_ago=30), observation(ALC, 0.4)], knowledge
    )
    assert new.get("LYMPHOPENIA_PROFOUND") == "info"
    assert "LYMPHOPENIA_PROFOUND" not in continuing


def test_refractory_needs_two_moieties_and_persistence(knowledge):
    counts = [observation(WBC, 1.6, days_ago=20), observation(WBC, 1.5), observation(ANC, 0.9)]
    two_drugs = [sle(), medication_request(MYCOPHENOLATE), medication_request(TACROLIMUS)]
    one_moiety = [
        sle(),
        medication_request(MYCOPHENOLATE),
        medication_request(None, text="Myfortic 360 mg"),
    ]
    assert fired(two_drugs + counts, knowledge)["REFRACTORY_LEUKOPENIA_REFERRAL"] == "warning"
    assert "REFRACTORY_LEUKOPENIA_REFERRAL" not in fired(one_moiety + counts, knowledge)
    too_close = [observation(WBC, 1.6, days_ago=6), observation(WBC, 1.5), observation(ANC, 0.9)]
    assert "REFRACTORY_LEUKOPENIA_REFERRAL" not in fired(two_drugs + too_close, knowledge)
    recovered = [
        observation(WBC, 1.6, days_ago=20),
        observation(WBC, 4.0, days_ago=10),
        observation(WBC, 1.5),
        observation(ANC, 0.9),
    ]
    assert "REFRACTORY_LEUKOPENIA_REFERRAL" not in fired(two_drugs + recovered, knowledge)


def test_refractory_card_cites_rituximab_only_as_a_case_report(knowledge):
    resources = [
        sle(),
        medication_request(MYCOPHENOLATE),
        medication_request(TACROLIMUS),
        observation(WBC, 0.8, days_ago=10),
        observation(WBC, 0.05, "/uL"),
    ]
    record = build_record(resources, PATIENT, NOW, knowledge)
    [finding] = [
        f
        for f in evaluate_rules(record, knowledge, "patient-view", RULES)
        if f.rule == "REFRACTORY_LEUKOPENIA_REFERRAL"
    ]
    assert finding.indicator == "critical"
    text = " ".join(finding.recommendations)
    assert "case report" in text and "recommended" not in text.lower()


@pytest.mark.parametrize(("days", "stale"), [(90, False), (91, True)])
def test_cbc_stale_on_established_tier_a_drug(days, stale, knowledge):
    resources = [
        medication_request(METHOTREXATE, days_ago=400),
        observation(WBC, 6.0, days_ago=days),
    ]
    assert ("CBC_STALE" in fired(resources, knowledge)) is stale


@pytest.mark.parametrize(("days", "stale"), [(14, False), (15, True)])
def test_cbc_stale_after_a_new_start_uses_14_days(days, stale, knowledge):
    resources = [
        medication_request(METHOTREXATE, days_ago=30),
        observation(WBC, 6.0, days_ago=days),
    ]
    assert ("CBC_STALE" in fired(resources, knowledge)) is stale


def test_tier_a_drug_without_any_wbc_is_stale(knowledge):
    assert fired([medication_request(METHOTREXATE, days_ago=400)], knowledge) == {
        "CBC_STALE": "warning"
    }


def test_low_count_never_repeated_is_news(knowledge):
    cards = fired([sle(), observation(WBC, 3.1, days_ago=31)], knowledge)
    assert cards == {"CBC_STALE": "warning"}


@pytest.mark.parametrize("unit", ["cells/hpf", None])
def test_unknown_unit_gives_data_quality_and_no_clinical_card(unit, knowledge):
    cards = fired([sle(), observation(WBC, 2.0, unit)], knowledge)
    assert cards == {"DATA_QUALITY": "info"}


def test_unknown_unit_on_a_tier_a_drug_without_other_wbc_is_a_warning(knowledge):
    cards = fired(
        [medication_request(AZATHIOPRINE, days_ago=400), observation(WBC, 2.0, None)], knowledge
    )
    assert cards["DATA_QUALITY"] == "warning"


def test_tier_a_drug_with_status_unknown_is_reported(knowledge):
    cards = fired(
        [sle(), medication_request(AZATHIOPRINE, status="unknown"), observation(WBC, 6.0)],
        knowledge,
    )
    assert cards == {"DATA_QUALITY": "info"}


def test_contradictory_anc_above_wbc_is_not_used(knowledge):
    cards = fired(
        [
            sle(),
            observation(WBC, 3.0),
            observation(ANC, 0.3, ucum=True),
            observation(ANC, 5.0, hours_ago=0.2),
        ],
        knowledge,
    )
    assert "NEUTROPENIA_SEVERE" in cards or "DATA_QUALITY" in cards


def test_out_of_scope_patient_gets_no_cards(knowledge):
    stopped = medication_request(METHOTREXATE, status="stopped", days_ago=730)
    assert fired([stopped, observation(WBC, 1.5), observation(ANC, 0.3)], knowledge) == {}
    refuted = sle(verification="refuted")
    assert fired([refuted, observation(ANC, 0.3)], knowledge) == {}


def test_discoid_lupus_alone_is_not_sle_but_unspecified_lupus_is(knowledge):
    discoid = condition("200938002")
    unspecified = condition("200936003")
    assert fired([discoid, unspecified, observation(WBC, 3.2)], knowledge) == {}
    assert fired([unspecified, observation(WBC, 3.2)], knowledge) == {"LEUKOPENIA_MONITOR": "info"}


def test_suspected_sle_counts_with_its_wording(knowledge):
    record = build_record(
        [sle(verification="provisional"), observation(WBC, 3.2)], PATIENT, NOW, knowledge
    )
    [finding] = evaluate_rules(record, knowledge, "patient-view", RULES)
    assert "suspected SLE" in finding.summary


def test_steroid_leukocytosis_is_a_note_never_a_leukopenia_card(knowledge):
    cards = fired([sle(), medication_request(PREDNISONE), observation(WBC, 14.2)], knowledge)
    assert cards == {"STEROID_LEUKOCYTOSIS_NOTE": "info"}


def test_preliminary_result_counts_only_for_critical_rules(knowledge):
    moderate = fired([sle(), observation(ANC, 0.8, status="preliminary")], knowledge)
    severe = fired([sle(), observation(ANC, 0.3, status="preliminary")], knowledge)
    assert "NEUTROPENIA_MODERATE" not in moderate
    assert severe.get("NEUTROPENIA_SEVERE") == "critical"


def test_cyclophosphamide_counts_for_28_days_after_the_last_dose(knowledge):
    def given(days_ago: int) -> dict[str, Any]:
        return {
            "resourceType": "MedicationAdministration",
            "id": f"ma{days_ago}",
            "status": "completed",
            "subject": {"reference": f"Patient/{PATIENT}"},
            "medicationCodeableConcept": {"text": "cyclophosphamide 750 mg IV"},
            "effectiveDateTime": when(days_ago),
        }

    assert "NEUTROPENIA_SEVERE" in fired([given(28), observation(ANC, 0.4)], knowledge)
    assert fired([given(29), observation(ANC, 0.4)], knowledge) == {}
