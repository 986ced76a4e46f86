"""Fever never silences a neutropenia card on its own: the severe and moderate cards give way to
the FEBRILE_NEUTROPENIA card (catalogue precedence), and where that card does not fire (a site
whose febrile-neutropenia ANC is below the severe or moderate one) they still speak, led by the
fever."""

from __future__ import annotations

from cds_service.knowledge import load_knowledge
from cds_service.protocol.hooks import PATIENT_VIEW
from cds_service.record import build_record
from cds_service.rules import evaluate_rules
from cds_service.rules.base import Finding
from cds_service.rules.catalogue import rule_ids
from tests.support.order_builders import NOW, PATIENT, count, sle


def _findings(
    anc: float, thresholds: dict[str, float] | None = None, febrile: bool = True
) -> dict[str, Finding]:
    knowledge = load_knowledge(thresholds or {})
    resources = [sle(), count("anc", anc, 0), count("wbc", 2.0, 0)]
    if febrile:
        resources.append(count("temp", 38.6, 0.05))
    record = build_record(resources, PATIENT, NOW, knowledge)
    findings = evaluate_rules(record, knowledge, PATIENT_VIEW, rule_ids(PATIENT_VIEW))
    return {f.rule: f for f in findings}


def test_with_the_default_thresholds_fever_and_anc_below_0_5_give_only_the_febrile_card() -> None:
    found = _findings(0.4)
    assert "FEBRILE_NEUTROPENIA" in found
    assert "NEUTROPENIA_SEVERE" not in found


def test_severe_card_speaks_with_fever_when_the_site_febrile_anc_is_lower() -> None:
    found = _findings(0.4, {"febrile_neutropenia_anc": 0.3})
    assert "FEBRILE_NEUTROPENIA" not in found
    severe = found["NEUTROPENIA_SEVERE"]
    assert severe.indicator == "critical"
    assert "with fever: evaluate now" in severe.summary
    assert severe.evidence[0].startswith("Fever: ")
    # The patient has a fever: the card sends them down the febrile pathway, never asks
    # whether they have one.
    assert severe.recommendations[0].startswith("Emergency evaluation now")
    assert not any("ask about fever" in line for line in severe.recommendations)
    assert "asco_idsa_fn_2018" in severe.sources


def test_severe_card_without_fever_asks_about_fever() -> None:
    severe = _findings(0.4, {"febrile_neutropenia_anc": 0.3}, febrile=False)["NEUTROPENIA_SEVERE"]
    assert severe.recommendations[0].startswith("Same-day clinician review; ask about fever")
    assert "asco_idsa_fn_2018" not in severe.sources


def test_moderate_card_speaks_led_by_fever_when_the_site_febrile_anc_is_lower() -> None:
    found = _findings(0.7, {"febrile_neutropenia_anc": 0.5})
    assert "FEBRILE_NEUTROPENIA" not in found
    moderate = found["NEUTROPENIA_MODERATE"]
    assert moderate.summary.startswith("Febrile now")
    assert moderate.indicator == "warning"


def test_just_above_the_site_febrile_anc_the_febrile_card_does_not_fire() -> None:
    # The edge: ANC equal to the threshold is not below it.
    found = _findings(0.3, {"febrile_neutropenia_anc": 0.3})
    assert "FEBRILE_NEUTROPENIA" not in found
    assert "NEUTROPENIA_SEVERE" in found
