"""Card rendering: CDS Hooks 2.0 fields, evidence, sources and FHIR actions."""

from __future__ import annotations

from cds_service.cards import RULE_SYSTEM, render_card
from cds_service.rules.base import DraftOrderChange, Finding, SuggestedOrder
from tests.support.conformance import check_card


def finding(**overrides) -> Finding:
    values = dict(
        rule="NEUTROPENIA_SEVERE",
        indicator="critical",
        summary="Severe neutropenia.",
        evidence=["ANC 0.40 x10^9/L (received 400 /uL) on 2026-01-15"],
        recommendations=["Same-day review."],
        sources=["ctcae_v5", "eular_sle_2023"],
        orders=[
            SuggestedOrder("cbc", "stat", "Order CBC", recommended=True),
            SuggestedOrder("hematology_referral", "urgent", "Refer"),
        ],
    )
    return Finding(**(values | overrides))


def test_card_carries_rule_topic_evidence_sources_and_actions(knowledge):
    card = render_card(finding(), "p1", knowledge)
    check_card(card)
    assert card["source"]["topic"] == {
        "system": RULE_SYSTEM,
        "code": "NEUTROPENIA_SEVERE",
        "display": "Severe neutropenia",
    }
    assert card["source"]["label"] == knowledge.source("ctcae_v5").label
    assert "received 400 /uL" in card["detail"]
    [cbc, referral] = card["suggestions"]
    request = cbc["actions"][0]["resource"]
    assert request["resourceType"] == "ServiceRequest" and request["priority"] == "stat"
    assert request["code"]["coding"][0]["code"] == "57021-8"
    assert request["subject"] == {"reference": "Patient/p1"}
    assert referral["actions"][0]["resource"]["code"]["text"] == "Referral to hematology"
    assert card["selectionBehavior"] == "any"
    # Each reference once: the primary in `source`, the others as links, none in the text.
    assert [link["url"] for link in card["links"]] == [knowledge.source("eular_sle_2023").url]
    assert "EULAR" not in card["detail"] and "Sources:" not in card["detail"]
    # The rule id and knowledge version are machine-readable only.
    assert "NEUTROPENIA_SEVERE" not in card["detail"] and knowledge.version not in card["detail"]
    assert card["extension"] == {"leukopenia-cds-knowledge-version": knowledge.version}


def test_a_single_source_gives_no_links(knowledge):
    card = render_card(finding(sources=["ctcae_v5"]), "p1", knowledge)
    assert "links" not in card


def test_long_summary_is_cut_below_140_characters(knowledge):
    card = render_card(finding(summary="x" * 300), "p1", knowledge)
    assert len(card["summary"]) < 140


def test_long_summary_is_never_cut_mid_word(knowledge):
    words = "Severe neutropenia with an unusually long explanation of what to do " * 4
    summary = render_card(finding(summary=words), "p1", knowledge)["summary"]
    assert len(summary) < 140 and summary.endswith("...")
    assert words.startswith(summary[:-3]) and words[len(summary) - 3] == " "


def test_draft_order_delete_uses_resource_id(knowledge):
    change = DraftOrderChange(
        "delete", "MedicationRequest/d1", "Cancel the order", recommended=True
    )
    card = render_card(finding(draft_changes=[change], orders=[]), "p1", knowledge)
    check_card(card)
    action = card["suggestions"][0]["actions"][0]
    assert action == {
        "type": "delete",
        "description": "Cancel the order",
        "resourceId": "MedicationRequest/d1",
    }
    assert card["selectionBehavior"] == "at-most-one"


def test_tpmt_order_and_no_empty_values(knowledge):
    card = render_card(
        finding(orders=[SuggestedOrder("tpmt_nudt15", "routine", "TPMT")], override_reasons=[]),
        "p1",
        knowledge,
    )
    check_card(card)
    assert "overrideReasons" not in card
    code = card["suggestions"][0]["actions"][0]["resource"]["code"]["coding"][0]["code"]
    assert code == "93193-1"
