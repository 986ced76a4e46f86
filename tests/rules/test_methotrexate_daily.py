"""METHOTREXATE_DAILY_DOSING (clinical rules §3 v4) at its edges: more than two days with a
dose in any 7 days, by mouth, subcutaneously or intramuscularly; a draft is critical, a current
record a warning (critical with a cytopenia)."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.cards import render_card
from cds_service.record import build_record
from cds_service.record.schedule import dose_days, route_of
from cds_service.rules import RULES, evaluate_rules
from tests.support.builders import METHOTREXATE, NOW, PATIENT
from tests.support.order_builders import KNOWLEDGE, cards, count, med_request, sle

RULE = "METHOTREXATE_DAILY_DOSING"


def mtx_dosage(
    mg: float = 10,
    frequency: int = 1,
    period: float = 1,
    unit: str = "d",
    route: str | None = "26643006",
    **repeat: Any,
) -> dict[str, Any]:
    dosage: dict[str, Any] = {
        "text": "as ordered",
        "timing": {
            "repeat": {"frequency": frequency, "period": period, "periodUnit": unit, **repeat}
        },
        "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg", "code": "mg"}}],
    }
    if route:
        dosage["route"] = {"coding": [{"system": "http://snomed.info/sct", "code": route}]}
    return dosage


def mtx_draft(dose: dict[str, Any], rid: str = "mtx-draft") -> dict[str, Any]:
    return med_request(rid, "methotrexate 2.5 MG Oral Tablet", code=METHOTREXATE, dose=dose)


def mtx_current(dose: dict[str, Any]) -> dict[str, Any]:
    return med_request(
        "mtx-current", "methotrexate 2.5 MG Oral Tablet", "active", METHOTREXATE, dose, days=200
    )


def normal_counts() -> list[dict[str, Any]]:
    return [sle(), count("wbc", 6.0, 3), count("anc", 3.5, 3)]


@pytest.mark.parametrize(
    ("frequency", "period", "unit", "extra", "days", "fires"),
    [
        (1, 1, "d", {}, 7.0, True),  # once daily: the sandbox's only choice
        (2, 1, "d", {}, 7.0, True),  # twice daily
        (1, 2, "d", {}, 3.5, True),  # every other day
        (1, 3, "d", {}, 7 / 3, True),  # every 3 days: 3 days in some 7-day windows
        (1, 3.5, "d", {}, 2.0, False),  # twice weekly: the edge is not crossed
        (2, 1, "wk", {}, 2.0, False),  # twice weekly
        (1, 1, "wk", {}, 1.0, False),  # the usual weekly dose
        (1, 7, "d", {}, 1.0, False),  # weekly as period 7 d
        (3, 1, "wk", {}, 1.0, False),  # read as a weekly dose split into 3
        (4, 1, "wk", {}, 4.0, True),  # 4 doses a week cannot be a split weekly dose
        (1, 12, "h", {}, 7.0, True),  # every 12 hours, ongoing
        (1, 12, "h", {"count": 3}, 2.0, False),  # 3 doses 12 h apart: a split weekly dose
        (1, 12, "h", {"count": 5}, 3.0, True),  # 5 doses 12 h apart span 3 days
        (1, 1, "d", {"count": 2}, 2.0, False),  # two daily doses in all
        (1, 1, "d", {"count": 3}, 3.0, True),  # three daily doses
        (1, 1, "mo", {}, 7 / 30, False),  # monthly
    ],
)
def test_days_with_a_dose_in_any_7_days_at_the_edges(
    frequency, period, unit, extra, days, fires
) -> None:
    dosage = mtx_dosage(frequency=frequency, period=period, unit=unit, **extra)
    reading = dose_days([dosage])
    assert reading is not None and reading.days == pytest.approx(days)
    found = cards(normal_counts(), [mtx_draft(dosage)])
    assert (RULE in found) is fires


def test_named_weekdays_decide_the_days() -> None:
    three = mtx_dosage(frequency=1, period=1, unit="wk", dayOfWeek=["mon", "wed", "fri"])
    two = mtx_dosage(frequency=1, period=1, unit="wk", dayOfWeek=["mon", "thu"])
    assert RULE in cards(normal_counts(), [mtx_draft(three)])
    assert RULE not in cards(normal_counts(), [mtx_draft(two)])


def test_a_timing_code_or_the_order_text_is_read_when_there_is_no_repeat() -> None:
    coded = {
        "timing": {"code": {"coding": [{"code": "QD"}]}},
        "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg", "code": "mg"}}],
    }
    text_daily = {"text": "10 mg by mouth daily"}
    text_weekly = {"text": "15 mg weekly; folic acid 5 mg daily on the other days"}
    assert RULE in cards(normal_counts(), [mtx_draft(coded)])
    assert RULE in cards(normal_counts(), [mtx_draft(text_daily)])
    assert RULE not in cards(normal_counts(), [mtx_draft(text_weekly)])


@pytest.mark.parametrize(
    ("route", "fires"),
    [
        ("26643006", True),  # oral
        ("34206005", True),  # subcutaneous
        ("78421000", True),  # intramuscular
        (None, True),  # no route: judged as oral
        ("47625008", False),  # intravenous: oncology dosing, not judged
        ("72607000", False),  # intrathecal
    ],
)
def test_only_oral_subcutaneous_or_intramuscular_methotrexate_is_judged(route, fires) -> None:
    dosage = mtx_dosage(route=route)
    assert (RULE in cards(normal_counts(), [mtx_draft(dosage)])) is fires
    assert (route_of([dosage]) == "not oral, SC or IM") is (not fires)


def test_the_draft_card_is_critical_offers_weekly_or_cancel_and_protocol_reasons() -> None:
    finding = cards(normal_counts(), [mtx_draft(mtx_dosage())])[RULE]
    assert finding.indicator == "critical"
    assert finding.summary.startswith("Methotrexate 10 mg once daily: update to once weekly")
    assert len(finding.summary) < 140
    update, cancel = finding.draft_changes
    assert update.kind == "update" and update.recommended
    assert update.label == "Change the order to methotrexate 10 mg once weekly"
    repeat = update.resource["dosageInstruction"][0]["timing"]["repeat"]
    assert repeat == {"frequency": 1, "period": 1, "periodUnit": "wk"}
    assert update.resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 10
    assert cancel.kind == "delete" and cancel.resource_id == "MedicationRequest/mtx-draft"
    assert not cancel.recommended
    assert finding.override_reasons == [
        "oncology-protocol",
        "obstetric-protocol",
        "specialist-protocol",
        "weekly-dose-split",
    ]
    card = render_card(finding, PATIENT, KNOWLEDGE)
    assert card["source"]["url"].endswith("aec9984e-34c5-481b-b6bf-9bb5caf1daf8")
    links = {link["url"] for link in card["links"]}
    assert any("ismp.org" in url for url in links)
    delete = card["suggestions"][1]["actions"][0]
    assert delete == {
        "type": "delete",
        "description": "Cancel the methotrexate order",
        "resourceId": "MedicationRequest/mtx-draft",
    }
    reasons = {r["code"]: r["display"] for r in card["overrideReasons"]}
    assert reasons["obstetric-protocol"] == "Obstetric protocol (e.g. ectopic pregnancy)"


def test_a_weekly_draft_gets_no_card_and_a_pill_dose_is_never_shown_as_a_code() -> None:
    assert RULE not in cards(normal_counts(), [mtx_draft(mtx_dosage(unit="wk"))])
    pills = mtx_dosage()
    pills["doseAndRate"] = [{"doseQuantity": {"value": 4, "unit": "{pill}", "code": "{pill}"}}]
    finding = cards(normal_counts(), [mtx_draft(pills)])[RULE]
    label = finding.draft_changes[0].label
    assert label == "Change the order to methotrexate 4 tablets once weekly"
    assert "{" not in finding.summary + " ".join(finding.evidence)


def test_order_select_judges_only_the_selected_draft() -> None:
    daily = mtx_draft(mtx_dosage())
    assert RULE not in cards(normal_counts(), [daily], "order-select", selections=[])
    selected = cards(
        normal_counts(), [daily], "order-select", selections=["MedicationRequest/mtx-draft"]
    )
    assert selected[RULE].indicator == "critical"


def _patient_view(resources: list[dict[str, Any]]) -> dict[str, Any]:
    record = build_record(resources, PATIENT, NOW, KNOWLEDGE)
    return {f.rule: f for f in evaluate_rules(record, KNOWLEDGE, "patient-view", RULES)}


def test_a_current_daily_record_is_a_warning_and_critical_with_a_cytopenia() -> None:
    daily = mtx_current(mtx_dosage())
    warning = _patient_view(normal_counts() + [daily])[RULE]
    assert warning.indicator == "warning"
    assert "confirm today how the patient takes it" in warning.summary
    text = " ".join(warning.recommendations)
    assert "leucovorin per the label" in text and "renal and liver tests" in text
    low = [sle(), count("wbc", 2.9, 2), count("anc", 1.4, 2), daily]
    critical = _patient_view(low)[RULE]
    assert critical.indicator == "critical"
    assert "ANC 1.40" in critical.summary
    weekly = _patient_view(normal_counts() + [mtx_current(mtx_dosage(unit="wk"))])
    assert RULE not in weekly


def test_the_current_record_rule_ignores_a_stopped_daily_order() -> None:
    stopped = mtx_current(mtx_dosage())
    stopped["status"] = "stopped"
    assert RULE not in _patient_view(normal_counts() + [stopped])


def test_fever_does_not_rewrite_the_dosing_card() -> None:
    febrile = normal_counts() + [count("temp", 38.6, 0.05), mtx_current(mtx_dosage())]
    finding = _patient_view(febrile)[RULE]
    assert not finding.summary.startswith("Febrile now")


def test_a_daily_draft_with_low_counts_gets_one_card_about_the_order() -> None:
    low = [sle(), count("wbc", 3.2, 2), count("anc", 2.0, 2)]
    found = cards(low, [mtx_draft(mtx_dosage())])
    assert found[RULE].indicator == "critical"
    assert "ORDER_MYELOTOXIC_LOW_COUNTS" not in found  # no "keep the order" beside "weekly"
    weekly = cards(low, [mtx_draft(mtx_dosage(unit="wk"))])
    assert weekly["ORDER_MYELOTOXIC_LOW_COUNTS"].indicator == "warning"
    assert RULE not in weekly
