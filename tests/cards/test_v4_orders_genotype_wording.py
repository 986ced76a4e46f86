"""Clinical contract v4 (issue 23, rules-b items 4, 7, 8, 9, 10): the order being written comes
first, the thiopurine genotype card by gene and CPIC range, rituximab as the refractory suspect,
one card and one order per problem, orderable doses and plain wording. Each at its edges."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.knowledge import Product
from cds_service.record import build_record
from cds_service.record.dosing import daily_dose, dose_step, tablet_text, without_unit_codes
from cds_service.record.observations import per_gene_phenotypes
from cds_service.rules import evaluate_rules, rule_context
from cds_service.rules.answer import make_answer, most_important
from cds_service.rules.assessments import _significant_drop, duffy_null_could_explain
from cds_service.rules.base import Finding, SuggestedOrder
from cds_service.rules.drafts import evaluated_drugs, orderable_dose
from cds_service.rules.one_order import one_order_each
from tests.support.builders import NOW
from tests.support.order_builders import (
    DUFFY_NULL,
    KNOWLEDGE,
    ORDER_RULES,
    PATIENT,
    cards,
    count,
    dosage,
    med_request,
    record,
    sle,
    when,
)

from .test_cards_v3 import PATIENT_VIEW_RULES, azathioprine, fever, patient_view, text, weight

AZA_DRAFT = "azathioprine 50 mg tablet"


def _aza_draft(mg: float = 100) -> dict[str, Any]:
    return med_request("aza", AZA_DRAFT, dose=dosage(mg))


def _order_sign(resources: list[dict], drafts: list[dict]) -> list[Finding]:
    """The cards of the answer, in answer order (rules/answer.py: cap, draft first, one order)."""
    answer = make_answer(record(resources, drafts), KNOWLEDGE, "order-sign", ORDER_RULES)
    return list(answer.cards)


# --- Item 4: the order being written comes first ---------------------------------------------


@pytest.mark.parametrize(("anc", "critical"), [(0.99, True), (1.0, False)])
def test_febrile_neutropenia_makes_a_tier_a_draft_critical_and_first(
    anc: float, critical: bool
) -> None:
    resources = [sle(), fever(38.6), count("wbc", 2.4, 0.1), count("anc", anc, 0.1)]
    findings = _order_sign(resources, [_aza_draft()])
    order = next(f for f in findings if f.rule == "ORDER_MYELOTOXIC_LOW_COUNTS")
    if not critical:  # ANC 1.0 is not febrile neutropenia (< 1.0): the usual warning
        assert order.indicator == "warning"
        assert "FEBRILE_NEUTROPENIA" not in {f.rule for f in findings}
        return
    assert [f.rule for f in findings[:2]] == ["ORDER_MYELOTOXIC_LOW_COUNTS", "FEBRILE_NEUTROPENIA"]
    assert order.indicator == "critical"
    assert order.summary == (
        f"Febrile neutropenia (ANC {anc:.2f}): do not start azathioprine now: cancel or defer."
    )
    assert [c.kind for c in order.draft_changes] == ["delete", "update"] and not order.orders


def test_severe_neutropenia_makes_a_continuation_critical_whatever_its_dose() -> None:
    current = azathioprine(days=400)
    resources = [sle(), current, count("wbc", 2.0, 0.2), count("anc", 0.45, 0.2)]
    order = cards(resources, [_aza_draft()])["ORDER_MYELOTOXIC_LOW_COUNTS"]
    assert order.indicator == "critical"
    assert order.summary.startswith("Severe neutropenia (ANC 0.45): do not continue azathioprine")
    assert "duffy-null" not in order.override_reasons


def test_in_order_hooks_the_order_card_leads_its_indicator() -> None:
    findings = [
        Finding("critical", "s", [], [], ["ctcae_v5"], rule="NEUTROPENIA_SEVERE"),
        Finding("critical", "s", [], [], ["ctcae_v5"], rule="ORDER_MYELOTOXIC_LOW_COUNTS"),
        Finding("warning", "s", [], [], ["ctcae_v5"], rule="THIOPURINE_PGX"),
    ]
    assert [f.rule for f in most_important(findings, "order-sign")] == [
        "ORDER_MYELOTOXIC_LOW_COUNTS",
        "NEUTROPENIA_SEVERE",
        "THIOPURINE_PGX",
    ]
    # patient-view keeps catalogue order
    assert most_important(findings, "patient-view")[0].rule == "NEUTROPENIA_SEVERE"


# --- Item 9: one card and one order per problem ----------------------------------------------


@pytest.mark.parametrize(("anc", "moderate"), [(0.99, True), (1.0, False)])
def test_moderate_neutropenia_absorbs_the_dose_review(anc: float, moderate: bool) -> None:
    found = patient_view(
        [sle(), azathioprine(), weight(68), count("wbc", 2.6, 0.2), count("anc", anc, 0.2)]
    )
    assert ("NEUTROPENIA_MODERATE" in found) is moderate
    assert ("DRUG_CYTOPENIA_DOSE_REVIEW" in found) is not moderate
    card = found["NEUTROPENIA_MODERATE" if moderate else "DRUG_CYTOPENIA_DOSE_REVIEW"]
    assert "= 1.47 mg/kg/day" in text(card)
    if moderate:
        assert card.summary == (
            "Moderate neutropenia (ANC 0.99) on azathioprine: reduce or withhold per label; "
            "repeat CBC in 48-72 h."
        )
        assert "duffy-null" not in card.override_reasons


def _with(rule: str, indicator: str, *orders: SuggestedOrder) -> Finding:
    return Finding(indicator, "s", [], ["r"], ["ctcae_v5"], orders=list(orders), rule=rule)  # type: ignore[arg-type]


def test_one_cbc_and_one_referral_per_answer_at_the_most_urgent_priority() -> None:
    top = _with(
        "DRUG_CYTOPENIA_DOSE_REVIEW",
        "warning",
        SuggestedOrder("cbc", "urgent", "Order CBC with differential"),
    )
    below = _with(
        "REFRACTORY_LEUKOPENIA_REFERRAL",
        "warning",
        SuggestedOrder("hematology_referral", "urgent", "Refer to hematology (urgent)"),
        SuggestedOrder("cbc", "stat", "Order CBC with differential and smear (stat)"),
    )
    other = _with("CBC_STALE", "warning", SuggestedOrder("cbc", "routine", "Order CBC"))
    one_order_each([top, below, other])
    assert [(o.kind, o.priority, o.label) for o in top.orders] == [
        ("cbc", "stat", "Order CBC with differential and smear (stat)")
    ]
    assert [o.kind for o in below.orders] == ["hematology_referral"]  # the only referral stays
    assert "CBC order offered on the card above." in below.recommendations
    assert other.orders == [] and "CBC order offered on the card above." in other.recommendations


# --- Item 7: the thiopurine genotype card ----------------------------------------------------


@pytest.mark.parametrize(
    ("text_value", "genes"),
    [
        (
            "TPMT normal metabolizer; NUDT15 intermediate metabolizer",
            (("TPMT", "normal"), ("NUDT15", "intermediate")),
        ),
        (
            "NUDT15 *1/*3 poor; TPMT *1/*3A intermediate",
            (("NUDT15", "poor"), ("TPMT", "intermediate")),
        ),
        ("Intermediate metabolizer", ()),
    ],
)
def test_each_gene_keeps_its_own_phenotype(text_value: str, genes: tuple) -> None:
    assert per_gene_phenotypes(text_value) == genes


def _genotype(phenotype: str, days: float = 300) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "pgx",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "93193-1"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when(days),
        "valueCodeableConcept": {"text": "TPMT and NUDT15 genotype"},
        "interpretation": [{"text": phenotype}],
    }


ONLY_NUDT15 = "TPMT normal metabolizer; NUDT15 intermediate metabolizer"
BOTH = "TPMT intermediate metabolizer; NUDT15 intermediate metabolizer"


@pytest.mark.parametrize(("mg", "indicator"), [(120, "info"), (125, "warning")])
def test_a_new_start_is_judged_against_the_top_of_the_cpic_range(mg: float, indicator: str) -> None:
    """2.4 mg/kg/day at 50 kg is 120 mg: inside (info), 125 mg is above (warning)."""
    resources = [sle(), weight(50), count("wbc", 6.0, 3), _genotype(ONLY_NUDT15)]
    finding = cards(resources, [_aza_draft(mg)])["THIOPURINE_PGX"]
    assert finding.indicator == indicator
    assert finding.summary.startswith("NUDT15 intermediate, TPMT normal: azathioprine")
    assert "TPMT and NUDT15 intermediate" not in text(finding)
    assert "20-50%" not in text(finding)  # only the tier that applies
    if indicator == "info":
        assert "reduce" not in text(finding).lower() and not finding.draft_changes
    else:
        assert "start at no more than 2.4 mg/kg/day" in finding.summary
        reduce = finding.draft_changes[-1]
        assert reduce.kind == "update" and reduce.label.startswith("Reduce azathioprine to 100 mg")


def test_both_genes_intermediate_use_the_2024_range_and_cite_it() -> None:
    resources = [sle(), weight(50), count("wbc", 6.0, 3), _genotype(BOTH)]
    finding = cards(resources, [_aza_draft(100)])["THIOPURINE_PGX"]  # 2.0 mg/kg/day
    assert finding.indicator == "warning"
    assert "no more than 1.5 mg/kg/day" in finding.summary
    assert finding.sources[0] == "cpic_thiopurines_update"
    assert any("20-50%" in line and "0.4-1.5 mg/kg/day" in line for line in finding.recommendations)
    assert not any("30-80%" in line for line in finding.recommendations)


def test_a_renewal_above_the_range_is_established_and_never_reduce() -> None:
    current = med_request("aza-cur", AZA_DRAFT, status="active", dose=dosage(150), days=500)
    resources = [sle(), current, weight(50), count("wbc", 6.0, 3), _genotype(ONLY_NUDT15)]
    finding = cards(resources, [_aza_draft(150)])["THIOPURINE_PGX"]
    assert finding.indicator == "info"
    assert "established above the CPIC starting range" in finding.summary
    assert "reduce" not in finding.summary.lower() and not finding.draft_changes


@pytest.mark.parametrize(
    ("anc", "indicator", "priority"), [(0.99, "warning", "urgent"), (1.0, "info", "routine")]
)
def test_no_result_and_a_severe_cytopenia_orders_the_genotype_urgently(
    anc: float, indicator: str, priority: str
) -> None:
    resources = [sle(), azathioprine(days=60), count("wbc", 2.6, 0.2), count("anc", anc, 0.2)]
    found = patient_view(resources)
    pgx = found["THIOPURINE_PGX"]
    assert pgx.indicator == indicator
    assert [o.priority for o in pgx.orders] == [priority]
    assert ("test before or early in therapy" in pgx.summary) is (anc >= 1.0)
    cytopenia = found["NEUTROPENIA_MODERATE" if anc < 1.0 else "DRUG_CYTOPENIA_DOSE_REVIEW"]
    urgent_line = [line for line in text(cytopenia).split("\n") if "urgently" in line]
    assert len(urgent_line) == (1 if anc < 1.0 else 0)


def test_unreadable_genotype_results_are_not_absent_results() -> None:
    resources = [sle(), azathioprine(days=60), count("wbc", 2.6, 0.2), count("anc", 0.7, 0.2)]
    unreadable = build_record(
        resources, PATIENT, NOW, KNOWLEDGE, {"phenotypes": "could not be retrieved"}
    )
    findings = evaluate_rules(unreadable, KNOWLEDGE, "patient-view", PATIENT_VIEW_RULES)
    assert "THIOPURINE_PGX" not in {f.rule for f in findings}
    assert not any("No TPMT" in text(f) for f in findings)


# --- Item 8: rituximab, the suspect ----------------------------------------------------------


def _refractory(rituximab_days: float | None) -> Finding:
    mmf = med_request(
        "mmf", "mycophenolate mofetil", status="active", dose=dosage(1000, frequency=2), days=500
    )
    tac = med_request("tac", "tacrolimus", status="active", dose=dosage(2, frequency=2), days=300)
    drugs = [mmf]
    if rituximab_days is None:
        drugs.append(tac)
    else:
        drugs.append(
            med_request(
                "rtx",
                "rituximab",
                status="completed",
                code="121191",
                dose=dosage(1000),
                days=rituximab_days,
            )
        )
    counts = [count("wbc", 1.7, 20), count("wbc", 1.6, 0.2), count("anc", 0.7, 0.2)]
    return patient_view([sle(), *drugs, *counts])["REFRACTORY_LEUKOPENIA_REFERRAL"]


def test_recent_rituximab_is_a_suspect_not_a_treatment() -> None:
    finding = _refractory(150)
    assert "hanai_2025" not in finding.sources and finding.sources[0] == "wolach_rituximab_lon_2010"
    assert "375 mg/m2" not in text(finding) and not finding.evidence_level
    assert "hold or reduce rituximab" not in text(finding).lower()
    assert any(
        line.startswith("Rituximab, last infusion") and "do not re-dose" in line
        for line in finding.recommendations
    )
    assert "hold or reduce mycophenolate mofetil with the rheumatologist" in text(finding)


def test_without_rituximab_the_case_report_is_the_last_step_and_one_verb_per_list() -> None:
    finding = _refractory(None)
    assert finding.sources == ["hanai_2025"]
    assert finding.recommendations[0] == (
        "Drug toxicity first: hold or reduce mycophenolate mofetil with the rheumatologist; ask "
        "the rheumatologist about tacrolimus."
    )
    assert not any(line[:2] in ("1.", "2.", "3.") for line in finding.recommendations)
    assert ">=" not in finding.summary


# --- Item 10: orderable doses, override reasons, Duffy-null falls ----------------------------


@pytest.mark.parametrize(
    ("mg", "tablet", "shown"),
    [
        (25, 50, "25 mg (half a 50 mg tablet)"),
        (50, 50, "50 mg (one 50 mg tablet)"),
        (75, 50, "75 mg (1 and a half 50 mg tablets)"),
        (100, 50, "100 mg (2 x 50 mg tablets)"),
        (25, None, "25 mg"),
    ],
)
def test_tablet_text(mg: float, tablet: float | None, shown: str) -> None:
    assert tablet_text(mg, tablet) == shown


def _pill_order(scored: bool, strength: float | None) -> tuple[dict, Any]:
    raw = med_request("aza", AZA_DRAFT, dose=dosage(2, unit="{pill}"))
    product = Product("azathioprine", "azathioprine", strength, "tablet", scored)
    return raw, daily_dose(raw["dosageInstruction"], product)


def test_a_countable_unit_never_reaches_the_resource() -> None:
    raw, dose = _pill_order(True, 50)
    same = without_unit_codes(raw, dose)
    assert same["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["code"] == "mg"
    assert same["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 100
    raw, dose = _pill_order(False, None)
    unknown = without_unit_codes(raw, dose)
    assert unknown["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] == {
        "value": 2,
        "unit": "tablet",
    }


def test_allopurinol_with_a_scored_tablet_offers_half_a_tablet() -> None:
    """With allopurinol, 1/3 of 100 mg is 33 mg: a scored 50 mg tablet (RxNorm 197388) gives
    25 mg, written in mg."""
    allopurinol = med_request("allo", "allopurinol", status="active", dose=dosage(100), days=200)
    draft = med_request("aza", AZA_DRAFT, code="197388", dose=dosage(2, unit="{tbl}"))
    found = cards([sle(), allopurinol, count("wbc", 6.0, 2)], [draft])
    changes = found["ORDER_MYELOTOXIC_LOW_COUNTS"].draft_changes
    [update] = [c for c in changes if c.kind == "update"]
    assert update.resource is not None
    quantity = update.resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert quantity["value"] == 25 and quantity["code"] == "mg"
    assert "1/3-1/4 of 100 mg = 25-33 mg" in update.label


@pytest.mark.parametrize(("scored", "step"), [(True, 25), (False, 50)])
def test_half_tablets_only_for_scored_tablets(scored: bool, step: float) -> None:
    _, dose = _pill_order(scored, 50)
    assert dose_step(dose, None) == step
    _, unknown = _pill_order(scored, None)
    assert dose_step(unknown, 25) == 25 and dose_step(unknown, None) is None


def test_orderable_dose_rounds_down_to_the_step() -> None:
    draft = med_request("aza", AZA_DRAFT, code="197388", dose=dosage(3, unit="{tbl}"))
    [drug] = evaluated_drugs(record([sle()], [draft]))
    assert drug.medication.dose.per_dose_mg == 150
    assert orderable_dose(drug, 120) == 100  # 25 mg steps (scored 50 mg)
    assert orderable_dose(drug, 24) is None  # nothing orderable below the step
    assert orderable_dose(drug, 150) is None  # not lower than the draft


@pytest.mark.parametrize(
    ("anc", "wbc", "fits"),
    [(1.0, 3.4, True), (0.99, 3.4, False), (1.3, 3.0, True), (1.3, 2.99, False)],
)
def test_duffy_null_override_fits_only_what_duffy_null_could_explain(
    anc: float, wbc: float, fits: bool
) -> None:
    rec = record([sle(), count("wbc", wbc, 1), count("anc", anc, 1)], [])
    reasons = ["WBC < 3.5"]
    assert duffy_null_could_explain(rule_context(rec, KNOWLEDGE, "patient-view"), reasons) is fits
    assert (
        duffy_null_could_explain(
            rule_context(rec, KNOWLEDGE, "patient-view"), ["ALC 0.40 < 0.5 x10^9/L"]
        )
        is False
    )
    documented = record([sle(), DUFFY_NULL, count("wbc", wbc, 1), count("anc", anc, 1)], [])
    assert (
        duffy_null_could_explain(rule_context(documented, KNOWLEDGE, "patient-view"), reasons)
        is False
    )


@pytest.mark.parametrize(("latest", "fall"), [(3.0, False), (2.9, True)])
def test_a_duffy_null_fall_is_judged_against_the_duffy_null_reference(
    latest: float, fall: bool
) -> None:
    """WBC from a median of 5.0: a 40% fall, but below the lab's 4.0 only; for a Duffy-null
    patient the lower limit is the Duffy-null reference low, 3.00."""
    earlier = [count("wbc", 5.0, d) for d in (150, 100, 50)]
    rec = record([sle(), DUFFY_NULL, *earlier, count("wbc", latest, 1)], [])
    wbc = rec.latest("wbc")
    assert wbc is not None
    found = _significant_drop(rec, wbc, KNOWLEDGE)
    assert (found is not None) is fall
    if found:
        assert "below the lower limit 3.00" in found


def test_an_unconvertible_unit_code_is_shown_without_its_braces() -> None:
    dose = daily_dose([dosage(2, unit="{puff}")], None)
    assert dose.description == "dose unit puff cannot be converted to mg"


def test_a_dose_near_the_float_limit_never_breaks_the_orderable_dose() -> None:
    """Found by the fuzz test: 3.59e306 tablets of 50 mg is 1.8e308 mg; the label's range and
    the rounding must still answer (the card is what matters, not the number's beauty)."""
    allopurinol = med_request("allo", "allopurinol", status="active", dose=dosage(100), days=200)
    draft = med_request("aza", AZA_DRAFT, code="197388", dose=dosage(3.59e306, unit="{tbl}"))
    found = cards([sle(), allopurinol, count("wbc", 6.0, 2)], [draft])
    assert found["ORDER_MYELOTOXIC_LOW_COUNTS"].indicator == "warning"


@pytest.mark.parametrize(("wbc", "urgent"), [(1.9, True), (2.0, False)])
def test_the_dose_review_carries_the_urgent_genotype_line_after_a_severe_leukopenia(
    wbc: float, urgent: bool
) -> None:
    found = patient_view([sle(), azathioprine(days=400), count("wbc", wbc, 0.2)])
    review = found["DRUG_CYTOPENIA_DOSE_REVIEW"]
    lines = [line for line in review.recommendations if "TPMT" in line]
    assert len(lines) == 1
    assert ("urgently" in lines[0]) is urgent
    assert found["THIOPURINE_PGX"].indicator == ("warning" if urgent else "info")
