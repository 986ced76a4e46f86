"""Clinical numbers live in the knowledge (thresholds.yaml), not in rule code: a site that
overrides one (CDS_THRESHOLDS) changes the decision and the words with it. The first test reads
every number the rule modules type and accepts only those listed here with why they are not a
clinical threshold; the others change a moved threshold and watch the decision change."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from cds_service.knowledge import load_knowledge
from cds_service.record import build_record
from cds_service.rules.assessments import baseline, neutrophil_state
from cds_service.rules.base import Finding
from tests.support import order_builders
from tests.support.builders import (
    ANC,
    MYCOPHENOLATE,
    NOW,
    PATIENT,
    TACROLIMUS,
    WBC,
    medication_request,
    observation,
    sle,
    temperature,
    when,
)
from tests.support.findings import findings

RULES_DIR = Path(__file__).resolve().parents[2] / "cds_service" / "rules"
# Another change moves these modules' last literals; they join the scan when it lands.
NOT_SCANNED: set[str] = set()
# (module, number): why it is not a clinical threshold. 0, 1 and -1 are never listed.
NOT_CLINICAL = {
    ("__init__.py", 5): "at most 5 recommendations on a card (a list size)",
    ("answer.py", 3): "the 3-card cap (answer policy, not a clinical number)",
    ("answer.py", 2): "the rank of 'info' among the indicators",
    ("assessments.py", 4): "the trend lists 4 earlier values (a list size)",
    ("assessments.py", 3600): "seconds in an hour",
    ("base.py", 139): "the CDS Hooks summary length",
    ("base.py", 365.25): "days in a year (months as the text shows them)",
    ("base.py", 12): "months in a year",
    ("base.py", 3): "a period shown in whole months give or take 3 days (wording)",
    ("data_quality.py", 5): "at most 5 recommendations (a list size)",
    ("dose_review.py", 2): "two WBCs make a span; the stable span is read over twice its length",
    ("dose_review.py", 5): "at most 5 recommendations (a list size)",
    ("drafts.py", 10): "display rounding of a dose",
    ("drafts.py", 1e15): "display rounding of a dose",
    ("drafts.py", 1.001): "float tolerance: a dose 0.1% higher is an increase",
    ("drafts.py", 1e-09): "float tolerance",
    ("drugs.py", 5): "at most 5 recommendations (a list size)",
    ("drugs.py", 1000): "mg to mcg",
    ("leukopenia.py", 5): "at most 5 recommendations (a list size)",
    ("lymphopenia.py", 3): "the evidence shows the last 3 ALCs (a list size)",
    ("lymphopenia.py", 2): "the ALC before the latest (a slice)",
    ("lymphopenia.py", 1e-09): "float tolerance",
    ("monitoring.py", 1.001): "float tolerance: a dose 0.1% higher is an increase",
    ("one_order.py", 5): "at most 5 recommendations (a list size)",
    ("one_order.py", 2): "the rank of 'stat' among priorities; two orders of a kind",
    ("reading.py", 5): "the trend's 5 results (a list size)",
    ("reading.py", 2): "the stable span is read over twice its length",
    ("thiopurine_dose.py", 1.001): "float tolerance on the top of the CPIC range",
    ("thiopurine_dose.py", 2): "both genes, TPMT and NUDT15",
    ("thiopurine_dose.py", 100): "a fraction shown as a percentage",
    ("thiopurine_dose.py", 5): "at most 5 recommendations (a list size)",
    # The rule's definition (its catalogue title says "more than 2 days a week"), not a
    # site-tunable limit: the daily-dosing error it catches is any schedule beyond weekly.
    ("methotrexate.py", 2.0): "MAX_DAYS_PER_WEEK defines METHOTREXATE_DAILY_DOSING",
    ("myelotoxic_order.py", 5): "at most 5 recommendations (a list size)",
    ("neutropenia.py", 5): "at most 5 recommendations (a list size)",
    ("neutropenia.py", 2): "the summary names at most 2 drugs (a list size)",
}


def _numbers(path: Path) -> set[tuple[str, float]]:
    """(module, number) for each int or float the module types (booleans are not numbers)."""
    return {
        (path.name, node.value)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant)
        and type(node.value) in (int, float)
        and node.value not in (0, 1, -1)
    }


def test_no_clinical_number_is_typed_in_a_rule_module() -> None:
    found: set[tuple[str, float]] = set()
    for path in sorted(RULES_DIR.glob("*.py")):
        if path.name not in NOT_SCANNED:
            found |= _numbers(path)
    unexplained = sorted(set(found) - set(NOT_CLINICAL))
    assert unexplained == [], "a threshold belongs in knowledge/thresholds.yaml"
    # The list stays honest: an entry whose number is gone is removed.
    assert sorted(set(NOT_CLINICAL) - set(found)) == []


def _findings(resources: list[dict[str, Any]], **thresholds: float) -> dict[str, Finding]:
    return findings(resources, load_knowledge(thresholds))


def _azathioprine(days_ago: float = 400) -> dict[str, Any]:
    return medication_request(
        "1256", text="azathioprine 50 mg tablet", days_ago=days_ago, dose_mg=100
    )


def test_the_febrile_wbc_window_decides_whether_a_febrile_patient_needs_a_cbc() -> None:
    # Febrile on azathioprine, last WBC 96 h ago (normal, inside its 90-day window).
    resources = [sle(), _azathioprine(), observation(WBC, 5.0, days_ago=4), temperature(38.6, 1)]
    default = _findings(resources)["CBC_STALE"]
    assert any("none in the last 72 h" in line for line in default.evidence)
    assert any(
        "none in the last 48 h" in line
        for line in _findings(resources, febrile_wbc_hours=48)["CBC_STALE"].evidence
    )
    assert "CBC_STALE" not in _findings(resources, febrile_wbc_hours=120)


def test_the_grade4_wbc_is_where_severe_neutropenia_by_wbc_meets_leukopenia_monitor() -> None:
    # WBC 1.2 with no differential: LEUKOPENIA_MONITOR (b) by default (1.0 to < 2.0); with
    # the grade 4 limit at 1.5 the WBC bounds the ANC below it: NEUTROPENIA_SEVERE.
    resources = [sle(), observation(WBC, 1.2)]
    default, moved = _findings(resources), _findings(resources, grade4_leukopenia_wbc=1.5)
    assert "LEUKOPENIA_MONITOR" in default and "NEUTROPENIA_SEVERE" not in default
    assert "NEUTROPENIA_SEVERE" in moved and "LEUKOPENIA_MONITOR" not in moved
    knowledge = load_knowledge({"grade4_leukopenia_wbc": 1.5})
    state = neutrophil_state(build_record(resources, PATIENT, NOW, knowledge), knowledge, False)
    assert state.anc_below_one_by_wbc


def test_the_values_a_median_needs_come_from_the_knowledge() -> None:
    wbcs = [observation(WBC, v, days_ago=d) for v, d in ((5.0, 90), (5.2, 60), (4.8, 30))]
    resources = [sle(), *wbcs, observation(WBC, 3.0)]
    for needed, name in ((3, "6-month median"), (4, "earlier value")):
        knowledge = load_knowledge({"baseline_median_min_values": needed})
        record = build_record(resources, PATIENT, NOW, knowledge)
        found = baseline(record, record.series("wbc")[0], knowledge)
        assert found is not None and found.name == name


def _tpmt_intermediate() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "pgx-tpmt",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "41048-0"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when(50),
        "valueCodeableConcept": {"text": "*1/*3A"},
        "interpretation": [{"text": "Intermediate metabolizer"}],
    }


def test_the_cpic_range_comes_from_the_knowledge() -> None:
    # Azathioprine 100 mg daily started 40 days ago at 68 kg: 1.47 mg/kg/day, within the one
    # intermediate gene range (2-3 mg/kg/day x 30-80% = 0.6-2.4); above it at 40%.
    weight = observation("29463-7", 68, "kg", days_ago=10)
    resources = [sle(), _azathioprine(days_ago=40), _tpmt_intermediate(), weight]
    within = _findings(resources)["THIOPURINE_PGX"]
    above = _findings(resources, cpic_one_intermediate_high_fraction=0.4)["THIOPURINE_PGX"]
    assert within.indicator == "info" and "within the CPIC starting range" in within.summary
    assert above.indicator == "warning" and "no more than 1.2 mg/kg/day" in above.summary
    assert "start at 30-40% of the normal starting dose" in above.recommendations[0]


def test_the_no_result_card_quotes_the_cpic_fractions_of_the_knowledge() -> None:
    resources = [sle(), _azathioprine(days_ago=40), observation(WBC, 5.4, days_ago=6)]
    default = _findings(resources)["THIOPURINE_PGX"]
    moved = _findings(resources, cpic_both_intermediate_low_fraction=0.1)["THIOPURINE_PGX"]
    assert any("30-80%" in r and "at 20-50%" in r for r in default.recommendations)
    assert any("at 10-50%" in r for r in moved.recommendations)


@pytest.mark.parametrize(("needed", "fires"), [(2, True), (3, False)])
def test_the_immunosuppressants_a_refractory_card_needs_come_from_the_knowledge(
    needed: int, fires: bool
) -> None:
    counts = [observation(WBC, 1.6, days_ago=20), observation(WBC, 1.5), observation(ANC, 0.9)]
    drugs = [sle(), medication_request(MYCOPHENOLATE), medication_request(TACROLIMUS)]
    found = _findings(drugs + counts, refractory_min_moieties=needed)
    assert ("REFRACTORY_LEUKOPENIA_REFERRAL" in found) is fires
    if fires:
        summary = found["REFRACTORY_LEUKOPENIA_REFERRAL"].summary
        assert summary.startswith(f"Persistent severe leukopenia on {needed} or more")


def test_a_new_lymphopenia_episode_quotes_the_episode_window_of_the_knowledge() -> None:
    resources = [sle(), _azathioprine(), observation(WBC, 5.0), observation("731-0", 0.4)]
    for days, words in ((365, "12 months"), (183, "6 months")):
        card = _findings(resources, lymphopenia_episode_days=days)["DRUG_CYTOPENIA_DOSE_REVIEW"]
        assert any(f"no earlier ALC in the last {words})" in line for line in card.evidence)


def test_a_draft_above_the_cpic_range_takes_the_unknown_nudt15_test_along() -> None:
    """Only TPMT known, azathioprine drafted at 150 mg daily at 50 kg (3.0 mg/kg/day, above
    0.6-2.4): the update carries the NUDT15 test, which is then not offered a second time."""
    resources = [
        sle(),
        _tpmt_intermediate(),
        observation("29463-7", 50, "kg", days_ago=10),
        observation(WBC, 5.4, days_ago=6),
    ]
    draft = order_builders.med_request(
        "aza", "azathioprine 50 mg tablet", dose=order_builders.dosage(150)
    )
    card = order_builders.cards(resources, [draft])["THIOPURINE_PGX"]
    assert [c.kind for c in card.draft_changes] == ["delete", "update"]
    [test] = card.draft_changes[1].with_orders
    assert test.kind == "tpmt_nudt15" and card.orders == []
