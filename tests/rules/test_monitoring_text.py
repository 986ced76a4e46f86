"""Drug-specific monitoring text (clinical rules §3 CBC_STALE and ORDER_NO_RECENT_CBC v4): each
drug's own label schedule, never another drug's, and the reason for a short interval."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.record import build_record
from cds_service.rules import RULES, evaluate_rules
from tests.support.builders import (
    NOW,
    PATIENT,
    RXNORM,
    UCUM,
    WBC,
    observation,
    sle,
    temperature,
    when,
)
from tests.support.order_builders import cards, dosage, med_request

LEFLUNOMIDE, AZATHIOPRINE, MYCOPHENOLATE, METHOTREXATE = "27169", "1256", "68149", "6851"
SCHEDULES = {
    LEFLUNOMIDE: "Leflunomide label (US): CBC monthly for 6 months after starting",
    AZATHIOPRINE: "Azathioprine label: CBC weekly in month 1",
    MYCOPHENOLATE: "CellCept label: consider a CBC weekly in month 1",
    METHOTREXATE: "Methotrexate label: blood counts at least monthly",
}


def order(
    code: str, mg: float, start_days: float, status: str = "active", end_days: float | None = None
) -> dict[str, Any]:
    repeat: dict[str, Any] = {"frequency": 1, "period": 1, "periodUnit": "d"}
    if end_days is not None:
        repeat["boundsPeriod"] = {"start": when(start_days), "end": when(end_days)}
    return {
        "resourceType": "MedicationRequest",
        "id": f"mr-{code}-{start_days}",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "authoredOn": when(start_days),
        "dosageInstruction": [
            {
                "timing": {"repeat": repeat},
                "doseAndRate": [
                    {"doseQuantity": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"}}
                ],
            }
        ],
    }


def stale_card(resources: list[dict[str, Any]], knowledge) -> Any:
    record = build_record(resources, PATIENT, NOW, knowledge)
    found = {f.rule: f for f in evaluate_rules(record, knowledge, "patient-view", RULES)}
    return found["CBC_STALE"]


def text(finding) -> str:
    return "\n".join([finding.summary, *finding.evidence, *finding.recommendations])


@pytest.mark.parametrize("code", list(SCHEDULES))
def test_each_drug_quotes_its_own_label_schedule_and_no_other(code, knowledge):
    card = stale_card([sle(), order(code, 10, 400), observation(WBC, 6.0, days_ago=120)], knowledge)
    joined = text(card)
    assert SCHEDULES[code] in joined
    others = [line for other, line in SCHEDULES.items() if other != code]
    assert not any(line in joined for line in others)
    assert "BSR/BHPR 2017: every 2 weeks" not in joined


@pytest.mark.parametrize(("wbc_days", "stale"), [(14, False), (15, True)])
def test_the_reason_for_a_short_interval_after_a_dose_increase(wbc_days, stale, knowledge):
    resources = [
        sle(),
        order(LEFLUNOMIDE, 10, 400, status="completed", end_days=31),
        order(LEFLUNOMIDE, 20, 30),
        observation(WBC, 6.1, days_ago=wbc_days),
    ]
    record = build_record(resources, PATIENT, NOW, knowledge)
    found = {f.rule: f for f in evaluate_rules(record, knowledge, "patient-view", RULES)}
    assert ("CBC_STALE" in found) is stale
    if stale:
        card = found["CBC_STALE"]
        increased = f"dose increased from 10 mg once daily to 20 mg once daily on {when(30)[:10]}"
        assert increased in text(card)
        assert "every 14 days until stable" in text(card)
        assert card.summary.startswith("CBC overdue on leflunomide (every 14 days since the dose")


def test_the_reason_for_a_start_and_for_an_established_dose(knowledge):
    started = stale_card(
        [sle(), order(AZATHIOPRINE, 100, 30), observation(WBC, 6.0, days_ago=20)], knowledge
    )
    assert f"started on {when(30)[:10]}, so a CBC every 14 days" in text(started)
    established = stale_card(
        [sle(), order(METHOTREXATE, 15, 700), observation(WBC, 6, days_ago=120)], knowledge
    )
    assert "an established dose, and no usable WBC in the last 90 days" in text(established)
    assert "every 14 days" not in text(established)


def test_the_febrile_variant_names_the_drug_and_says_nothing_else(knowledge):
    resources = [
        sle(),
        order(MYCOPHENOLATE, 1000, 500),
        observation(WBC, 5.9, days_ago=6),
        temperature(38.5, 2),
    ]
    card = stale_card(resources, knowledge)
    assert card.summary.startswith("Febrile now") and "mycophenolate mofetil" in card.summary
    assert card.recommendations == [
        "Febrile now: same-day assessment and CBC with differential stat."
    ]


def test_the_order_card_quotes_the_ordered_drugs_schedule_never_azathioprines() -> None:
    draft = med_request("lef", "leflunomide 20 MG Oral Tablet", code=LEFLUNOMIDE, dose=dosage(20))
    found = cards([sle(), observation(WBC, 6.0, days_ago=200)], [draft])["ORDER_NO_RECENT_CBC"]
    joined = text(found)
    assert SCHEDULES[LEFLUNOMIDE] in joined
    assert "zathioprine" not in joined
    assert found.sources[0] == "label_leflunomide"
