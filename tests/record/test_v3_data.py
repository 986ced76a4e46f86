"""Clinical contract v3, data as real EHRs and labs send it (issue 11): renewals, local forms,
lab unit spellings, censored and flagged results, an old differential, fever without a recent
count, and DATA_QUALITY only when it changes what the clinician knows."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.record import build_record, units
from cds_service.record.dosing import daily_dose
from cds_service.rules import RULES, evaluate_rules
from tests.support.builders import (
    ALC,
    ANC,
    AZATHIOPRINE,
    HYDROXYCHLOROQUINE,
    MYCOPHENOLATE,
    NOW,
    PATIENT,
    TACROLIMUS,
    WBC,
    condition,
    medication_request,
    observation,
    sle,
    temperature,
    when,
)
from tests.support.findings import findings

CYCLOSPORINE = "3008"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def cards(resources: list[dict[str, Any]], knowledge) -> dict[str, str]:
    return {rule: f.indicator for rule, f in findings(resources, knowledge).items()}


def aza_order(
    days_ago: float, dose_mg: float = 100, status: str = "active", end: float | None = None
):
    order = medication_request(AZATHIOPRINE, status=status, days_ago=days_ago, dose_mg=dose_mg)
    if end is not None:
        order["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"] = {
            "start": when(days_ago),
            "end": when(end),
        }
    return order


# --- 1. Renewals are not starts (§2.1 exposure start) -----------------------------------------


def _azathioprine(resources, knowledge):
    return build_record(resources, PATIENT, NOW, knowledge).exposure("azathioprine")


def test_a_renewal_at_the_same_dose_keeps_the_original_start(knowledge):
    exposure = _azathioprine([aza_order(400, status="completed", end=21), aza_order(20)], knowledge)
    assert (NOW - exposure.start).days == 400
    assert not exposure.started_recently
    assert not exposure.dose_increased_recently


def test_renewal_gives_no_stale_14_day_card_and_no_pgx(knowledge):
    resources = [
        sle(),
        aza_order(400, status="completed", end=21),
        aza_order(20),
        observation(WBC, 5.6, days_ago=25),
        observation(ANC, 3.3, days_ago=25),
    ]
    assert cards(resources, knowledge) == {}


@pytest.mark.parametrize(("gap_days", "new_start"), [(30, False), (31, True)])
def test_a_gap_over_30_days_makes_a_new_start(gap_days, new_start, knowledge):
    """Edge: the renewal starts exactly 30 days after the previous order ended: one run."""
    renewal_days_ago = 20
    previous_end = renewal_days_ago + gap_days
    exposure = _azathioprine(
        [aza_order(400, status="completed", end=previous_end), aza_order(renewal_days_ago)],
        knowledge,
    )
    assert exposure.started_recently is new_start
    assert ((NOW - exposure.start).days == renewal_days_ago) is new_start


def test_a_real_new_start_still_triggers_the_14_day_window_and_pgx(knowledge):
    resources = [sle(), aza_order(20), observation(WBC, 5.6, days_ago=16)]
    fired = cards(resources, knowledge)
    assert fired["CBC_STALE"] == "warning"
    assert "THIOPURINE_PGX" in fired


@pytest.mark.parametrize(("renewal_mg", "increased"), [(100, False), (75, False), (150, True)])
def test_only_a_higher_daily_dose_is_a_dose_increase(renewal_mg, increased, knowledge):
    exposure = _azathioprine(
        [aza_order(400, status="completed", end=21), aza_order(20, dose_mg=renewal_mg)], knowledge
    )
    assert exposure.dose_increased_recently is increased
    assert not exposure.started_recently


def test_a_dose_increase_shortens_the_stale_window(knowledge):
    resources = [
        sle(),
        aza_order(400, status="completed", end=21),
        aza_order(20, dose_mg=150),
        observation(WBC, 5.6, days_ago=16),
    ]
    assert cards(resources, knowledge)["CBC_STALE"] == "warning"


def test_an_increase_earlier_in_the_run_is_still_recent_after_a_same_dose_renewal(knowledge):
    exposure = _azathioprine(
        [
            aza_order(400, dose_mg=50, status="completed", end=60),
            aza_order(60, dose_mg=100, status="completed", end=10),
            aza_order(10, dose_mg=100),
        ],
        knowledge,
    )
    assert exposure.dose_increased_recently
    assert (NOW - exposure.start).days == 400


# --- 9. Local forms are out of scope (§2.1 route) ----------------------------------------------


def _ophthalmic(resource: dict[str, Any]) -> dict[str, Any]:
    resource["dosageInstruction"][0]["route"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": "54485002"}]
    }
    return resource


def _with_medication_form(name: str, form: str) -> dict[str, Any]:
    order = medication_request(None, text=name)
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "#m"}
    order["contained"] = [
        {"resourceType": "Medication", "id": "m", "code": {"text": name}, "form": {"text": form}}
    ]
    return order


@pytest.mark.parametrize(
    "order",
    [
        _ophthalmic(medication_request(CYCLOSPORINE, dose_mg=0.4, per_day=2)),
        medication_request(CYCLOSPORINE, text="cycloSPORINE 0.5 MG/ML Ophthalmic Emulsion"),
        medication_request(None, text="Restasis 0.05% emulsion"),
        medication_request(TACROLIMUS, text="tacrolimus 0.1 % topical ointment"),
        medication_request(None, text="Protopic (tacrolimus)"),
        _with_medication_form("methotrexate", "Cream"),
    ],
)
def test_local_forms_bring_no_patient_into_scope(order, knowledge):
    resources = [order, observation(WBC, 3.9, days_ago=120)]
    record = build_record(resources, PATIENT, NOW, knowledge)
    assert not record.in_scope
    assert cards(resources, knowledge) == {}


@pytest.mark.parametrize(
    ("route", "systemic"),
    [
        ("34206005", True),  # subcutaneous: "cutaneous" is not matched inside it
        ("26643006", True),  # oral
        ("37161004", False),  # rectal: local (choice recorded in local_form)
    ],
)
def test_systemic_routes_count(route, systemic, knowledge):
    order = medication_request(TACROLIMUS, dose_mg=2, per_day=2)
    order["dosageInstruction"][0]["route"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": route}],
        "text": {"34206005": "Subcutaneous route", "26643006": "Oral route"}.get(route, "Rectal"),
    }
    assert build_record([order], PATIENT, NOW, knowledge).in_scope is systemic


def test_no_route_and_no_local_form_is_systemic(knowledge):
    order = medication_request(None, text="cycloSPORINE modified 100 MG Oral Capsule")
    assert build_record([order], PATIENT, NOW, knowledge).in_scope


# --- 8. Lab spellings, censored and flagged results (§2.3) ------------------------------------


@pytest.mark.parametrize(
    ("unit", "factor"),
    [
        ("x10^3/\u00b5L", 1.0),  # micro sign
        ("x10^3/\u03bcL", 1.0),  # Greek mu
        ("K/\u00b5L", 1.0),
        ("x10E9/L", 1.0),
        ("10E9/L", 1.0),
        ("x 10^9/L", 1.0),
        ("X10^3/UL", 1.0),
        ("10*6/mL", 1.0),
        ("thou/uL", 1.0),
        ("/nL", 1.0),
        ("x10(9)/L", 1.0),
        ("10\u2079/L", 1.0),  # superscript exponent
        ("\u00d710\u00b3/\u00b5L", 1.0),
        ("Gpt/L", 1.0),
        ("cells/\u00b5L", 0.001),
        ("/mm3", 0.001),
        ("10^3/cu mm", 1.0),
    ],
)
def test_the_exponent_family_is_parsed_by_name(unit, factor):
    assert units.count_factor({"unit": unit}, {}) == pytest.approx(factor)


@pytest.mark.parametrize(
    "unit", ["109/L", "10 9/L", "g/L", "G/uL", "mg/dL", "cells/hpf", "10.3/uL"]
)
def test_spellings_that_are_not_counts_are_never_guessed(unit):
    assert units.count_factor({"unit": unit}, {}) is None


def test_k_per_ul_and_g_per_l_never_reach_the_ucum_converter(monkeypatch):
    def forbidden(code, target):
        raise AssertionError(f"{code} reached the UCUM converter")

    monkeypatch.setattr(units, "_ucum_factor", forbidden)
    for unit in ("K/uL", "G/L", "K/\u00b5L"):
        assert units.count_factor({"code": unit, "unit": unit}, {}) == 1.0


def test_a_cbc_in_micro_sign_units_is_used_and_not_overdue(knowledge):
    resources = [
        medication_request(MYCOPHENOLATE, days_ago=500, dose_mg=1000, per_day=2),
        observation(WBC, 5.9, "x10^3/\u00b5L", days_ago=1, ucum=False),
        observation(ANC, 3.7, "x10^3/\u00b5L", days_ago=1, ucum=False),
    ]
    record = build_record(resources, PATIENT, NOW, knowledge)
    assert record.latest("wbc").value == pytest.approx(5.9)
    assert record.unusable == []
    assert cards(resources, knowledge) == {}


def _text_count(code: str, text: str, flag: str | None = None, **kwargs: Any) -> dict[str, Any]:
    obs = observation(code, None, **kwargs)
    obs["valueString"] = text
    if flag:
        obs["interpretation"] = [{"coding": [{"system": INTERPRETATION, "code": flag}]}]
    return obs


def test_a_censored_value_string_is_judged_as_its_bound(knowledge):
    resources = [sle(), observation(WBC, 2.0), _text_count(ANC, "<0.1 x10^9/L")]
    record = build_record(resources, PATIENT, NOW, knowledge)
    anc = record.latest("anc")
    assert anc.value == pytest.approx(0.1) and anc.comparator == "<"
    assert "< 0.1 x10^9/L on" in anc.describe()  # v4: the sign and the lab's precision kept
    severe = findings(resources, knowledge)["NEUTROPENIA_SEVERE"]
    assert severe.indicator == "critical"
    assert "ANC < 0.1 x10^9/L" in severe.summary  # the bound is never shown as a value (v4)


def test_a_comparator_on_value_quantity_is_the_bound(knowledge):
    anc = observation(ANC, 0.5)
    anc["valueQuantity"]["comparator"] = "<"
    record = build_record([sle(), observation(WBC, 2.0), anc], PATIENT, NOW, knowledge)
    assert record.latest("anc").comparator == "<"
    assert record.latest("anc").describe().startswith("< 0.5 x10^9/L")  # v4: never "0.50"


@pytest.mark.parametrize("comparator", [">", ">="])
def test_a_lower_bound_is_neither_low_nor_normal(comparator, knowledge):
    """ ">0.4" says only that the ANC is at least 0.4: no severe card, and no silence either."""
    anc = observation(ANC, 0.4)
    anc["valueQuantity"]["comparator"] = comparator
    resources = [sle(), observation(WBC, 3.0), anc]
    record = build_record(resources, PATIENT, NOW, knowledge)
    assert record.latest("anc") is None
    fired = cards(resources, knowledge)
    assert "NEUTROPENIA_SEVERE" not in fired and "NEUTROPENIA_MODERATE" not in fired
    assert "DATA_QUALITY" in fired


@pytest.mark.parametrize("flag", ["LL", "<"])
def test_an_anc_flagged_critically_low_without_a_unit_is_severe(flag, knowledge):
    resources = [sle(), observation(WBC, 2.1), _text_count(ANC, "<0.1", flag)]
    found = findings(resources, knowledge)
    assert found["NEUTROPENIA_SEVERE"].indicator == "critical"
    assert "lab flags the ANC critically low: <0.1" in found["NEUTROPENIA_SEVERE"].summary
    assert "DATA_QUALITY" not in found  # the critical card already says it


def test_an_unflagged_unitless_anc_is_only_a_data_note(knowledge):
    resources = [sle(), observation(WBC, 5.1), _text_count(ANC, "2.0")]
    fired = cards(resources, knowledge)
    assert "NEUTROPENIA_SEVERE" not in fired
    assert fired["DATA_QUALITY"] == "info"


def test_a_flagged_anc_with_fever_is_febrile_neutropenia(knowledge):
    resources = [
        sle(),
        observation(WBC, 2.1),
        _text_count(ANC, "<0.1", "LL"),
        temperature(38.6, hours_ago=1),
    ]
    assert cards(resources, knowledge)["FEBRILE_NEUTROPENIA"] == "critical"


def test_a_flagged_anc_superseded_by_a_newer_normal_one_is_not_severe(knowledge):
    resources = [
        sle(),
        _text_count(ANC, "<0.1", "LL", days_ago=5),
        observation(WBC, 5.2),
        observation(ANC, 3.1),
    ]
    assert "NEUTROPENIA_SEVERE" not in cards(resources, knowledge)


def test_a_wbc_flagged_critically_low_with_anc_unknown_gives_leukopenia_monitor_b(knowledge):
    resources = [sle(), _text_count(WBC, "1.9", "LL")]
    found = findings(resources, knowledge)
    assert found["LEUKOPENIA_MONITOR"].indicator == "warning"
    assert "flags the WBC critically low (1.9)" in found["LEUKOPENIA_MONITOR"].summary
    assert "DATA_QUALITY" not in found


@pytest.mark.parametrize(
    ("code", "value", "indicator"),
    [
        (WBC, 1.99, "warning"),  # < 2.0 in 10^9/L, and lower still in /uL
        (WBC, 2.0, "info"),  # 2.0 x10^9/L is not severe
        (ANC, 0.49, "warning"),
        (ANC, 0.5, "info"),
        (ALC, 0.49, "warning"),
    ],
)
def test_a_count_severe_in_any_unit_must_be_resolved_today(code, value, indicator, knowledge):
    resources = [
        sle(),
        observation(WBC, 5.2, days_ago=100),
        observation(code, value, None, days_ago=1),
    ]
    found = findings(resources, knowledge)["DATA_QUALITY"]
    assert found.indicator == indicator
    assert ("resolve with the lab today" in found.summary) is (indicator == "warning")


# --- 7. An old differential does not outlive a newer count (§2.4 ANC unknown) -----------------


def test_old_low_anc_and_newer_wbc_without_differential_is_not_critical(knowledge):
    resources = [
        sle(),
        observation(WBC, 2.4, days_ago=9),
        observation(ANC, 0.3, days_ago=9),
        observation(WBC, 5.8, hours_ago=2),
    ]
    found = findings(resources, knowledge)
    assert set(found) == {"CBC_STALE"}
    assert found["CBC_STALE"].indicator == "warning"
    assert found["CBC_STALE"].summary == (
        "Last ANC 0.30 on 2026-01-06 was low; today's WBC has no differential: repeat it."
    )


@pytest.mark.parametrize(("anc", "stale"), [(0.99, True), (1.0, False)])
def test_the_repeat_it_variant_needs_an_anc_below_1(anc, stale, knowledge):
    resources = [
        sle(),
        observation(WBC, 3.0, days_ago=9),
        observation(ANC, anc, days_ago=9),
        observation(WBC, 5.8, hours_ago=2),
    ]
    assert ("CBC_STALE" in cards(resources, knowledge)) is stale


def test_a_newer_wbc_below_2_with_an_old_low_anc_is_leukopenia_monitor_b(knowledge):
    resources = [
        sle(),
        observation(WBC, 2.4, days_ago=9),
        observation(ANC, 0.3, days_ago=9),
        observation(WBC, 1.9, hours_ago=2),
    ]
    fired = cards(resources, knowledge)
    assert fired.get("LEUKOPENIA_MONITOR") == "warning"
    assert "NEUTROPENIA_SEVERE" not in fired


def test_old_low_anc_does_not_drive_the_dose_review(knowledge):
    resources = [
        medication_request(AZATHIOPRINE, days_ago=700, dose_mg=100),
        observation(WBC, 4.4, days_ago=9),
        observation(ANC, 1.2, days_ago=9),
        observation(WBC, 5.8, hours_ago=2),
    ]
    assert "DRUG_CYTOPENIA_DOSE_REVIEW" not in cards(resources, knowledge)


# --- Fever without a recent count (§2.4 fever with other cytopenia) ---------------------------


@pytest.mark.parametrize(("wbc_hours_ago", "stale"), [(71, False), (73, True)])
def test_febrile_on_a_tier_a_drug_without_a_wbc_in_72_h(wbc_hours_ago, stale, knowledge):
    resources = [
        sle(),
        medication_request(MYCOPHENOLATE, days_ago=500, dose_mg=1000, per_day=2),
        observation(WBC, 5.9, hours_ago=wbc_hours_ago),
        observation(ANC, 3.7, hours_ago=wbc_hours_ago),
        temperature(38.5, hours_ago=1),
    ]
    found = findings(resources, knowledge)
    assert ("CBC_STALE" in found) is stale
    if stale:
        card = found["CBC_STALE"]
        assert card.indicator == "warning"
        assert card.summary.startswith("Febrile now: same-day assessment and CBC with differential")
        assert card.orders[0].priority == "stat"


def test_the_febrile_variant_needs_a_tier_a_drug(knowledge):
    resources = [
        sle(),
        medication_request(HYDROXYCHLOROQUINE, days_ago=500, dose_mg=200, per_day=2),
        observation(WBC, 5.9, days_ago=5),
        observation(ANC, 3.7, days_ago=5),
        temperature(38.5, hours_ago=1),
    ]
    assert "CBC_STALE" not in cards(resources, knowledge)


# --- DATA_QUALITY v3 (§3) ---------------------------------------------------------------------


def test_data_quality_names_results_in_words_and_never_ids(knowledge):
    obs = observation(WBC, 2.1, "cells/hpf", days_ago=3, ucum=False)
    found = findings([sle(), obs], knowledge)["DATA_QUALITY"]
    text = " ".join([found.summary, *found.evidence, *found.recommendations])
    assert obs["id"] not in text and "Observation/" not in text
    assert found.recommendations[0].startswith("No clinical card was made")


def test_no_clinical_card_is_said_only_when_none_was(knowledge):
    resources = [
        sle(),
        observation(WBC, 3.0, days_ago=2),
        observation(ANC, 1.8, days_ago=2),
        observation(ALC, 1.2, "cells/hpf", days_ago=1, ucum=False),
    ]
    found = findings(resources, knowledge)
    assert "LEUKOPENIA_MONITOR" in found
    assert found["DATA_QUALITY"].recommendations[0].startswith("The other cards did not use")


def test_a_long_reason_shortens_the_wording_never_cuts_a_word(knowledge):
    obs = observation(WBC, 2.1, "cells per high power field under the microscope", days_ago=3)
    obs["valueQuantity"].pop("system")
    obs["valueQuantity"].pop("code")
    summary = findings([sle(), obs], knowledge)["DATA_QUALITY"].summary
    assert len(summary) <= 140
    assert summary == "WBC result could not be used: check with the lab."


def test_an_uninterpretable_count_superseded_by_a_newer_one_is_not_listed(knowledge):
    resources = [
        sle(),
        observation(WBC, 2.1, "cells/hpf", days_ago=20, ucum=False),
        observation(WBC, 5.4, days_ago=2),
        observation(ANC, 3.2, days_ago=2),
    ]
    assert cards(resources, knowledge) == {}


def test_unknown_status_is_named_by_the_drug(knowledge):
    order = medication_request(AZATHIOPRINE, status="unknown")
    found = findings([sle(), order, observation(WBC, 5.0, days_ago=3)], knowledge)["DATA_QUALITY"]
    assert found.evidence == ["azathioprine: medication status 'unknown'"]


@pytest.mark.parametrize("unit", ["{pill}", "{tablet}", "{tbl}", "{capsule}", "tab", "cap"])
def test_countable_units_are_tablets_of_the_product(unit, knowledge):
    dosage = [
        {
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 2, "code": unit}}],
        }
    ]
    with_strength = daily_dose(dosage, knowledge.products["197388"])
    assert with_strength.mg_per_day == pytest.approx(100)
    without = daily_dose(dosage, None)
    assert without.mg_per_day is None and without.strength_unknown
    assert "mg/kg not computed" in without.description


def test_stale_window_of_data_quality_follows_the_drug(knowledge):
    """A new start (14-day window) with the last interpretable WBC 20 days old and an
    uninterpretable one since: warning."""
    resources = [
        sle(),
        medication_request(AZATHIOPRINE, days_ago=30, dose_mg=100),
        observation(WBC, 5.0, days_ago=20),
        observation(WBC, 4.8, "cells/hpf", days_ago=3, ucum=False),
    ]
    assert cards(resources, knowledge)["DATA_QUALITY"] == "warning"


def test_condition_builder_still_counts_for_scope(knowledge):
    """Local forms are dropped, systemic ones beside them still count."""
    resources = [
        condition("69896004"),
        _ophthalmic(medication_request(CYCLOSPORINE, dose_mg=0.4, per_day=2)),
        medication_request(TACROLIMUS, dose_mg=2, per_day=2),
    ]
    record = build_record(resources, PATIENT, NOW, knowledge)
    assert [e.ingredient.id for e in record.immunosuppressants()] == ["tacrolimus"]


@pytest.mark.parametrize(
    ("display", "strength"),
    [
        ("Azathioprine 75 MG Oral Tablet", 75.0),
        ("mycophenolic acid 360 MG Delayed Release Oral Tablet", 360.0),
        ("24 HR tacrolimus 1 MG Extended Release Oral Capsule [Envarsus]", 1.0),
        ("sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet", None),
        ("methotrexate 25 MG/ML Injectable Solution", None),
        ("azathioprine", None),
    ],
)
def test_a_pill_is_one_tablet_of_the_coded_products_strength(display, strength, knowledge):
    from cds_service.knowledge import RXNORM
    from cds_service.record import terminology

    concept = {"coding": [{"system": RXNORM, "code": "999999", "display": display}]}
    product = terminology.product_of(concept, knowledge)
    assert (product.strength_mg if product else None) == strength
    dosage = [
        {
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "pill", "code": "{pill}"}}],
        }
    ]
    dose = daily_dose(dosage, product)
    assert dose.mg_per_day == (2 * strength if strength else None)


def test_free_text_strength_is_never_read(knowledge):
    from cds_service.record import terminology

    assert terminology.product_of({"text": "Azathioprine 75 MG Oral Tablet"}, knowledge) is None


def test_missing_data_is_named_in_words_not_prefetch_keys(knowledge):
    record = build_record([sle()], PATIENT, NOW, knowledge, unavailable={"counts": "timed out"})
    found = {f.rule: f for f in evaluate_rules(record, knowledge, "patient-view", RULES)}
    card = found["DATA_QUALITY"]
    assert card.indicator == "warning"
    assert card.evidence == ["Data not available from the EHR: blood counts (timed out)"]


def test_a_lost_superscript_unit_is_never_read_literally(knowledge):
    """'109/L' is valid UCUM (109 per litre): read literally, WBC 5.2 would be 5.7e-7 x10^9/L
    and a critical card; it is an unknown unit instead."""
    resources = [sle(), observation(WBC, 5.2, "109/L", days_ago=1)]
    fired = cards(resources, knowledge)
    assert "NEUTROPENIA_SEVERE" not in fired
    assert fired["DATA_QUALITY"] == "info"


@pytest.mark.parametrize(
    ("interpretation", "flagged"),
    [
        ({"text": "Critically low"}, True),
        ({"coding": [{"code": "LL"}]}, True),  # HL7 v2 table 0078 sends the same code
        ({"coding": [{"system": INTERPRETATION, "code": "AA"}]}, False),  # direction unknown
        ({"coding": [{"system": INTERPRETATION, "code": "L"}]}, False),  # low, not critical
    ],
)
def test_which_interpretations_are_critically_low(interpretation, flagged, knowledge):
    anc = _text_count(ANC, "<0.1")
    anc["interpretation"] = [interpretation]
    fired = cards([sle(), observation(WBC, 2.1), anc], knowledge)
    assert ("NEUTROPENIA_SEVERE" in fired) is flagged
