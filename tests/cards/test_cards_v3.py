"""Clinical contract v3, card content (issue 11): doses as prescribed, the critical order card,
one card per problem, dangerous combinations at order time, fever, wording that fits the
patient, and the 3-card cap. Each behaviour at its edges."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.record import format_count, received_as_shown
from cds_service.record.dosing import daily_dose, frequency_text, sig3
from cds_service.rules import evaluate_rules
from cds_service.rules.answer import MAX_CARDS
from cds_service.rules.answer import most_important as _most_important
from cds_service.rules.base import Finding
from cds_service.services import load_services
from tests.support.order_builders import (
    KNOWLEDGE,
    PATIENT,
    RXNORM,
    cards,
    count,
    dosage,
    med_request,
    record,
    sle,
    when,
)

PATIENT_VIEW_RULES = load_services()["leukopenia-patient-view"].rules
AZA = "azathioprine 50 mg tablet"


def patient_view(resources: list[dict]) -> dict[str, Finding]:
    findings = evaluate_rules(record(resources, []), KNOWLEDGE, "patient-view", PATIENT_VIEW_RULES)
    return {f.rule: f for f in findings}


def text(finding: Finding) -> str:
    return "\n".join([finding.summary, *finding.evidence, *finding.recommendations])


def fever(celsius: float = 38.5, hours: float = 1) -> dict:
    return count("temp", celsius, hours / 24)


def methotrexate(days: float = 400) -> dict:
    return med_request(
        "mtx", "methotrexate", status="active", dose=dosage(15, period_unit="wk"), days=days
    )


def azathioprine(days: float = 400, mg: float = 100) -> dict:
    return med_request("aza-cur", AZA, status="active", dose=dosage(mg), days=days)


def hydroxychloroquine() -> dict:
    return med_request(
        "hcq", "hydroxychloroquine", status="active", dose=dosage(200, frequency=2), days=900
    )


def weight(kg: float, days: float = 10) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"weight-{kg}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when(days),
        "valueQuantity": {
            "value": kg,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }


def cyclophosphamide_pulse(days: float) -> list[dict]:
    order = med_request("cyc", "cyclophosphamide", status="completed", dose=dosage(500), days=days)
    given = {
        "resourceType": "MedicationAdministration",
        "id": "cyc-given",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "3002"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when(days),
        "request": {"reference": "MedicationRequest/cyc"},
    }
    return [order, given]


# --- 2. Doses as prescribed (§2.5 display) --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [(2.142857, "2.14"), (2000, "2000"), (0.05, "0.05"), (1.4705, "1.47"), (150, "150")],
)
def test_at_most_three_significant_digits(value: float, shown: str) -> None:
    assert sig3(value) == shown


@pytest.mark.parametrize(
    ("frequency", "period", "unit", "shown"),
    [
        (1, 1, "wk", "once weekly"),
        (2, 1, "d", "twice daily"),
        (3, 1, "d", "three times daily"),
        (1, 8, "h", "every 8 hours"),
        (1, 2, "wk", "every 2 weeks"),
        (3, 2, "d", "three times every 2 days"),
    ],
)
def test_frequency_reads_as_a_prescriber_writes_it(
    frequency: float, period: float, unit: str, shown: str
) -> None:
    assert frequency_text(frequency, period, unit) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.05, "0.05"),
        (2.8, "2.80"),
        (14.2, "14.2"),
        (123.4, "123"),
        # Never rounded onto a threshold it meets: 0.496 < 0.5, 3.496 < 3.5, 10.96 < 11.0.
        (0.496, "0.496"),
        (3.496, "3.496"),
        (10.96, "10.96"),
        (0.0049, "0.005"),
    ],
)
def test_counts_have_at_most_three_significant_digits(value: float, shown: str) -> None:
    assert format_count(value) == shown


def test_the_value_as_received_is_repeated_only_when_the_unit_changed_it() -> None:
    assert received_as_shown("2.8 10*3/uL", 2.8)
    assert not received_as_shown("2800 /uL", 2.8)
    # v4: a censored value is shown with its sign ("< 0.1 x10^9/L"), so once is enough...
    assert received_as_shown("<0.1 x10^9/L", 0.1)
    assert not received_as_shown("<100 /uL", 0.1)  # ...unless its unit changed it


def test_every_two_weeks_is_not_shown_per_day() -> None:
    dose = daily_dose(
        [{**dosage(6), "timing": {"repeat": {"period": 14, "periodUnit": "d"}}}], None
    )
    assert dose.description == "6 mg every 14 days" and dose.weekly


def test_a_weekly_dose_reads_as_prescribed() -> None:
    dose = daily_dose([dosage(15, period_unit="wk")], None)
    assert dose.description == "15 mg once weekly" and dose.weekly
    assert dose.mg_per_day == pytest.approx(15 / 7)  # internal only
    twice = daily_dose([dosage(100, frequency=2)], None)
    assert twice.description == "100 mg twice daily" and not twice.weekly
    gcsf = daily_dose([dosage(300, unit="ug")], None)
    assert gcsf.description == "300 mcg once daily" and gcsf.microgram


def test_weekly_methotrexate_is_never_shown_per_day() -> None:
    found = patient_view([sle(), methotrexate(), count("wbc", 3.1, 2)])
    finding = found["DRUG_CYTOPENIA_DOSE_REVIEW"]
    assert "Methotrexate 15 mg once weekly." in finding.evidence
    assert "mg/day" not in text(finding) and "mg/kg" not in text(finding)


def test_a_daily_drug_shows_mg_per_kg_beside_the_prescribed_dose() -> None:
    found = patient_view([sle(), azathioprine(), weight(68), count("wbc", 3.1, 2)])
    lines = found["DRUG_CYTOPENIA_DOSE_REVIEW"].evidence
    assert "Azathioprine 100 mg once daily = 1.47 mg/kg/day at 68 kg" in "\n".join(lines)


def test_gcsf_is_shown_in_mcg_per_kg() -> None:
    filgrastim = med_request("g", "filgrastim", dose=dosage(300, unit="ug"))
    found = cards([sle(), weight(60), count("wbc", 2.6, 0.2)], [filgrastim])
    assert "300 mcg once daily = 5 mcg/kg/day at 60 kg" in text(found["GCSF_CAUTION"])


# --- 3. The critical order card --------------------------------------------------------------


def _mycophenolate_draft() -> dict:
    return med_request("mmf", "mycophenolate mofetil", dose=dosage(1000, frequency=2))


def test_critical_order_card_quotes_the_anc_and_offers_only_cancel_or_defer() -> None:
    counts = [count("wbc", 1.8, 1), count("anc", 0.4, 1)]
    finding = cards([sle(), *counts], [_mycophenolate_draft()])["ORDER_MYELOTOXIC_LOW_COUNTS"]
    assert finding.indicator == "critical"
    # v4: severe neutropenia now, so the order card names it and its decisive value.
    assert finding.summary == (
        "Severe neutropenia (ANC 0.40): do not start mycophenolate mofetil now: cancel or defer."
    )
    assert any("ANC is < 1.3 x10^9/L" in line for line in finding.recommendations)
    assert finding.orders == []  # no "keep the order" suggestion
    cancel, defer = finding.draft_changes
    assert cancel.kind == "delete" and cancel.recommended and cancel.with_orders
    assert defer.kind == "update" and defer.resource["status"] == "on-hold"
    assert defer.with_orders[0].priority == "stat"
    assert "lower dose" not in text(finding).lower() and "keep" not in text(finding).lower()


def test_anc_at_0_5_is_not_critical_and_may_be_kept() -> None:
    counts = [count("wbc", 1.8, 1), count("anc", 0.5, 1)]
    finding = cards([sle(), *counts], [_mycophenolate_draft()])["ORDER_MYELOTOXIC_LOW_COUNTS"]
    assert finding.indicator == "warning"
    assert any("Keep the order" in o.label for o in finding.orders)


def test_critical_by_wbc_quotes_the_wbc() -> None:
    found = cards([sle(), count("wbc", 0.9, 1)], [med_request("aza", AZA, dose=dosage(100))])
    # v4: a WBC < 1.0 with no differential is severe neutropenia (ANC at most the WBC).
    assert found["ORDER_MYELOTOXIC_LOW_COUNTS"].summary.startswith(
        "Severe neutropenia (ANC at most 0.90): do not start"
    )


# --- 4. One card per problem -----------------------------------------------------------------


def test_febrile_neutropenia_absorbs_the_dose_review_and_carries_the_drug() -> None:
    resources = [sle(), azathioprine(), weight(68), count("wbc", 2.4, 0.1), count("anc", 0.6, 0.1)]
    afebrile = patient_view(resources)
    # v4: the moderate neutropenia card absorbs the dose review and carries its drug lines.
    assert "NEUTROPENIA_MODERATE" in afebrile and "DRUG_CYTOPENIA_DOSE_REVIEW" not in afebrile
    assert "= 1.47 mg/kg/day" in text(afebrile["NEUTROPENIA_MODERATE"])
    febrile = patient_view([*resources, fever()])
    assert "DRUG_CYTOPENIA_DOSE_REVIEW" not in febrile
    assert "= 1.47 mg/kg/day" in text(febrile["FEBRILE_NEUTROPENIA"])


def test_severe_neutropenia_absorbs_the_dose_review() -> None:
    found = patient_view([sle(), methotrexate(), count("wbc", 1.9, 0.2), count("anc", 0.3, 0.2)])
    assert "DRUG_CYTOPENIA_DOSE_REVIEW" not in found
    assert "Methotrexate 15 mg once weekly." in found["NEUTROPENIA_SEVERE"].evidence


# --- 5. Dangerous combinations at order time, whatever the counts ---------------------------


def test_co_trimoxazole_on_methotrexate_with_normal_counts() -> None:
    bactrim = med_request("tmp", "Bactrim DS", dose=dosage(960, frequency=2))
    found = cards([sle(), methotrexate(), count("wbc", 6.3, 5), count("anc", 3.9, 5)], [bactrim])
    finding = found["ORDER_MYELOTOXIC_LOW_COUNTS"]
    assert finding.indicator == "warning"
    assert "another antibiotic or PJP" in finding.summary
    assert finding.sources[0] == "label_methotrexate"
    [cancel] = finding.draft_changes
    assert cancel.kind == "delete" and cancel.recommended


def test_allopurinol_on_azathioprine_with_normal_counts() -> None:
    allopurinol = med_request("allo", "allopurinol 100 mg", dose=dosage(100))
    found = cards([sle(), azathioprine(), count("wbc", 6.0, 5)], [allopurinol])
    finding = found["ORDER_MYELOTOXIC_LOW_COUNTS"]
    assert finding.indicator == "warning"
    assert "reduce azathioprine to 1/3-1/4" in finding.summary
    assert finding.sources[0] == "label_azathioprine"
    [cancel] = finding.draft_changes
    assert cancel.kind == "delete" and not cancel.recommended  # the thiopurine may change instead


def test_azathioprine_draft_on_allopurinol_offers_a_third_of_the_dose() -> None:
    allopurinol = med_request("allo", "allopurinol 100 mg", status="active", dose=dosage(100))
    draft = med_request("aza", AZA, dose=dosage(150))
    finding = cards([sle(), allopurinol, count("wbc", 6.0, 5)], [draft])[
        "ORDER_MYELOTOXIC_LOW_COUNTS"
    ]
    update = next(c for c in finding.draft_changes if c.kind == "update")
    assert update.recommended
    assert update.resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 50


def test_febuxostat_on_azathioprine_is_a_contraindication_not_a_dose_cut() -> None:
    """The febuxostat label contraindicates the pair: cancelling the febuxostat draft is
    recommended and no reduced thiopurine dose is offered."""
    febuxostat = med_request("febu", "febuxostat 40 mg", dose=dosage(40))
    finding = cards([sle(), azathioprine(), count("wbc", 6.0, 5)], [febuxostat])[
        "ORDER_MYELOTOXIC_LOW_COUNTS"
    ]
    assert finding.indicator == "warning"
    assert "contraindicated" in finding.summary and "1/3" not in finding.summary
    assert finding.sources[0] == "label_febuxostat"
    [cancel] = finding.draft_changes
    assert cancel.kind == "delete" and cancel.recommended


def test_azathioprine_draft_on_febuxostat_offers_no_reduced_dose() -> None:
    febuxostat = med_request("febu", "febuxostat 40 mg", status="active", dose=dosage(40))
    draft = med_request("aza", AZA, dose=dosage(150))
    finding = cards([sle(), febuxostat, count("wbc", 6.0, 5)], [draft])[
        "ORDER_MYELOTOXIC_LOW_COUNTS"
    ]
    assert "contraindicated" in finding.summary
    assert [c.kind for c in finding.draft_changes] == ["delete"]
    assert finding.draft_changes[0].recommended


def test_no_combination_and_normal_counts_gives_no_order_card() -> None:
    found = cards([sle(), count("wbc", 6.0, 5)], [med_request("aza", AZA, dose=dosage(100))])
    assert "ORDER_MYELOTOXIC_LOW_COUNTS" not in found


# --- 6. Fever --------------------------------------------------------------------------------


@pytest.mark.parametrize(("pulse_days", "fires"), [(11, True), (28, True), (29, False)])
def test_fever_in_the_nadir_window_without_a_count_since_the_pulse(
    pulse_days: float, fires: bool
) -> None:
    resources = [sle(), *cyclophosphamide_pulse(pulse_days), count("wbc", 6.8, pulse_days + 1)]
    found = patient_view([*resources, fever()])
    assert ("FEBRILE_NEUTROPENIA" in found) is fires
    if fires:
        finding = found["FEBRILE_NEUTROPENIA"]
        assert finding.indicator == "critical"
        assert "no count since the cyclophosphamide dose on" in finding.summary
        assert "nadir day 7-14" in finding.summary
        assert not any("hold" in line.lower() for line in finding.recommendations)


def test_a_normal_count_after_the_pulse_answers_the_nadir_question() -> None:
    resources = [sle(), *cyclophosphamide_pulse(11), count("wbc", 6.8, 12), count("wbc", 5.9, 1)]
    assert "FEBRILE_NEUTROPENIA" not in patient_view([*resources, fever()])


def test_fever_leads_the_dose_review_card() -> None:
    resources = [sle(), methotrexate(), count("wbc", 3.8, 0.1), count("anc", 1.2, 0.1)]
    afebrile = patient_view(resources)["DRUG_CYTOPENIA_DOSE_REVIEW"]
    assert afebrile.summary.startswith("Review methotrexate")
    febrile = patient_view([*resources, fever()])["DRUG_CYTOPENIA_DOSE_REVIEW"]
    assert febrile.summary.startswith(
        "Febrile now: same-day assessment and CBC with differential stat"
    )
    assert "ANC 1.20" in febrile.summary and febrile.indicator == "warning"
    assert febrile.orders[0].priority == "stat"
    assert len(febrile.recommendations) <= 5


def test_fever_makes_an_info_card_a_warning() -> None:
    resources = [sle(), hydroxychloroquine(), count("wbc", 2.5, 0.1)]
    assert patient_view(resources)["LEUKOPENIA_MONITOR"].indicator == "info"
    febrile = patient_view([*resources, fever()])["LEUKOPENIA_MONITOR"]
    assert febrile.indicator == "warning" and febrile.summary.startswith("Febrile now")
    assert "FEBRILE_NEUTROPENIA" not in patient_view([*resources, fever()])  # WBC >= 2.0


def test_fever_leaves_critical_and_combination_order_cards_their_own_summary() -> None:
    febrile = [sle(), fever(), count("wbc", 1.8, 0.1), count("anc", 0.4, 0.1)]
    critical = cards(febrile, [_mycophenolate_draft()])["ORDER_MYELOTOXIC_LOW_COUNTS"]
    assert critical.summary.startswith("Febrile neutropenia (ANC 0.40): do not start")
    bactrim = med_request("tmp", "Bactrim DS", dose=dosage(960, frequency=2))
    normal = [sle(), fever(), methotrexate(), count("wbc", 6.3, 0.1), count("anc", 3.9, 0.1)]
    combination = cards(normal, [bactrim])["ORDER_MYELOTOXIC_LOW_COUNTS"]
    assert "another antibiotic or PJP" in combination.summary
    low = [sle(), fever(), count("wbc", 3.2, 0.1), count("anc", 2.0, 0.1)]
    warning = cards(low, [med_request("aza", AZA, dose=dosage(100))])
    assert warning["ORDER_MYELOTOXIC_LOW_COUNTS"].summary.startswith("Febrile now")


# --- 10. Wording fits the patient ------------------------------------------------------------


def _ra() -> dict:
    ra = sle()
    ra["id"] = "ra"
    ra["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "69896004"}]}
    return ra


@pytest.mark.parametrize(
    ("resources", "keep_hcq", "lupus_words"),
    [
        ([_ra()], False, False),
        ([sle()], False, True),
        ([sle(), hydroxychloroquine()], True, True),
    ],
)
def test_lupus_and_hydroxychloroquine_wording_only_where_they_fit(
    resources: list[dict], keep_hcq: bool, lupus_words: bool
) -> None:
    finding = patient_view([*resources, methotrexate(), count("wbc", 3.1, 2)])[
        "DRUG_CYTOPENIA_DOSE_REVIEW"
    ]
    assert ("Keep hydroxychloroquine" in text(finding)) is keep_hcq
    assert ("before blaming disease activity" in text(finding)) is lupus_words
    assert ("SLE" in text(finding)) is False or lupus_words


def test_an_alc_trigger_gives_lymphopenia_advice() -> None:
    mmf = med_request(
        "mmf-cur", "mycophenolate mofetil", status="active", dose=dosage(1000), days=400
    )
    resources = [_ra(), mmf, count("wbc", 5.0, 2), count("anc", 3.0, 2), count("alc", 0.45, 2)]
    finding = patient_view(resources)["DRUG_CYTOPENIA_DOSE_REVIEW"]
    joined = text(finding)
    assert "withhold mycophenolate mofetil and discuss with the specialist team" in joined
    assert "screen for infection" in joined.lower()
    assert "1.3" not in "\n".join(finding.recommendations)  # not the ANC advice
    # v4: one card, the dose review absorbs the profound-lymphopenia card and its advice.
    assert "LYMPHOPENIA_PROFOUND" not in patient_view(resources)
    assert "in SLE" not in joined


@pytest.mark.parametrize(("earlier", "median_words"), [(2, False), (3, True)])
def test_a_median_needs_three_earlier_values(earlier: int, median_words: bool) -> None:
    history = [count("wbc", 5.0, 30 * (i + 1)) for i in range(earlier)]
    finding = patient_view([sle(), methotrexate(), *history, count("wbc", 3.1, 2)])[
        "DRUG_CYTOPENIA_DOSE_REVIEW"
    ]
    assert ("6-month median" in text(finding)) is median_words
    assert ("earlier value" in text(finding)) is not median_words


def test_a_cyclophosphamide_pulse_is_described_by_its_nadir() -> None:
    resources = [_ra(), *cyclophosphamide_pulse(10), count("wbc", 1.9, 0.1), count("anc", 0.4, 0.1)]
    finding = patient_view(resources)["NEUTROPENIA_SEVERE"]
    assert any(
        "nadir day 7-14" in r and "delay the next pulse" in r for r in finding.recommendations
    )
    assert "Hold cyclophosphamide" not in text(finding)


def test_wbc_below_one_without_differential_quotes_the_bound() -> None:
    finding = patient_view([sle(), count("wbc", 0.05, 0.1)])["NEUTROPENIA_SEVERE"]
    # v4 plain wording: no formula ("ANC <= WBC = 0.05" before v4).
    assert "ANC at most 0.05: WBC 0.05 with no differential" in finding.summary
    assert "ANC < 1.0" not in text(finding) and "<=" not in text(finding)
    assert any("profound agranulocytosis" in line for line in finding.evidence)


def _tpmt(text_value: str, code: str = "41048-0") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"pgx-{code}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when(50),
        "valueCodeableConcept": {"text": text_value},
        "interpretation": [{"text": "Intermediate metabolizer"}],
    }


@pytest.mark.parametrize(("code", "asks"), [("41048-0", True), ("93193-1", False)])
def test_intermediate_pgx_asks_for_nudt15_when_only_tpmt_is_known(code: str, asks: bool) -> None:
    found = patient_view(
        [sle(), azathioprine(days=40), _tpmt("*1/*3A", code), count("wbc", 5.4, 6)]
    )
    finding = found["THIOPURINE_PGX"]
    assert finding.indicator == "warning"  # a start with no weight: the dose cannot be compared
    asked = any("NUDT15 too" in line for line in finding.recommendations)
    assert asked is asks and bool(finding.orders) is asks


def test_moderate_neutropenia_names_the_patients_own_drugs_first() -> None:
    tacrolimus = med_request(
        "tac", "tacrolimus", status="active", dose=dosage(2, frequency=2), days=300
    )
    finding = patient_view([sle(), tacrolimus, count("wbc", 2.9, 1), count("anc", 0.8, 1)])[
        "NEUTROPENIA_MODERATE"
    ]
    line = next(r for r in finding.recommendations if "lower neutrophils" in r)
    assert line.index("tacrolimus") < line.index("sulfasalazine")


# --- Cards read in seconds: at most 3 cards, most urgent first -------------------------------


def _finding(rule: str, indicator: str) -> Finding:
    return Finding(indicator, "s", [], [], ["ctcae_v5"], rule=rule)  # type: ignore[arg-type]


def test_the_cap_keeps_the_most_urgent_cards_in_catalogue_order() -> None:
    findings = [
        _finding("DRUG_CYTOPENIA_DOSE_REVIEW", "warning"),
        _finding("THIOPURINE_PGX", "info"),
        _finding("NEUTROPENIA_SEVERE", "critical"),
        _finding("CBC_STALE", "warning"),
        _finding("DATA_QUALITY", "info"),
    ]
    kept = [f.rule for f in _most_important(findings, "patient-view")]
    assert len(kept) == MAX_CARDS == 3
    assert kept == ["NEUTROPENIA_SEVERE", "DRUG_CYTOPENIA_DOSE_REVIEW", "CBC_STALE"]
