"""Every order-select and order-sign scenario of fixtures/scenarios.json through the Flask test
client: the expected cards are present with their indicator, the absent ones are not."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.scenarios import call, cards_by_rule, order_scenarios, request_of


@pytest.mark.parametrize("entry", order_scenarios(), ids=lambda e: e["name"])
def test_order_scenario_gives_the_expected_cards(client, entry: dict[str, Any]) -> None:
    status, body = call(client, request_of(entry))
    assert status == 200, body
    fired = {card["source"]["topic"]["code"]: card["indicator"] for card in body["cards"]}
    for expected in entry["expected"]:
        assert fired.get(expected["rule"]) == expected["indicator"], (expected, fired)
    assert not set(entry["absent"]) & set(fired), fired


def test_the_manifest_covers_both_order_hooks() -> None:
    hooks = {entry["hook"] for entry in order_scenarios()}
    assert hooks == {"order-select", "order-sign"}


@pytest.mark.parametrize("entry", order_scenarios(), ids=lambda e: e["name"])
def test_order_cards_follow_the_response_rules(client, entry: dict[str, Any]) -> None:
    """CONFORMANCE §F: delete has resourceId only, update carries a whole resource with the
    draft's id, at most one recommended suggestion when the behaviour is at-most-one."""
    request = request_of(entry)
    drafts = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
        for e in request["context"]["draftOrders"].get("entry", [])
    }
    _, body = call(client, request)
    for card in body["cards"]:
        assert len(card["summary"]) < 140
        suggestions = card.get("suggestions", [])
        if card.get("selectionBehavior") == "at-most-one":
            assert sum(bool(s.get("isRecommended")) for s in suggestions) <= 1
        for suggestion in suggestions:
            for action in suggestion["actions"]:
                assert action["description"]
                if action["type"] == "delete":
                    assert action["resourceId"] in drafts and "resource" not in action
                elif action["type"] == "update":
                    resource = action["resource"]
                    reference = f"{resource['resourceType']}/{resource['id']}"
                    assert reference in drafts
                    assert set(resource) == set(drafts[reference])  # the whole resource
                else:
                    assert action["resource"]["resourceType"] == "ServiceRequest"


def test_allopurinol_scenario_offers_an_orderable_third_of_the_azathioprine_dose(client) -> None:
    """v4: 1/3-1/4 of 100 mg is 25-33 mg; rounded down to the 25 mg step (half a scored 50 mg
    tablet), written in mg, with the label's range and every action in the label."""
    entry = next(e for e in order_scenarios() if "allopurinol-wbc" in e["name"])
    _, body = call(client, request_of(entry))
    card = cards_by_rule(body["cards"])["ORDER_MYELOTOXIC_LOW_COUNTS"]
    updates = [(s, a) for s in card["suggestions"] for a in s["actions"] if a["type"] == "update"]
    assert len(updates) == 1
    suggestion, action = updates[0]
    dosage = action["resource"]["dosageInstruction"][0]
    dose = dosage["doseAndRate"][0]["doseQuantity"]
    assert dose == {"value": 25, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    assert dosage["text"] == "25 mg (half a 50 mg tablet) once daily"
    assert suggestion["label"] == (
        "Reduce azathioprine to 25 mg (half a 50 mg tablet) once daily (label with "
        "allopurinol: 1/3-1/4 of 100 mg = 25-33 mg) and order CBC with differential (urgent)"
    )
    assert suggestion.get("isRecommended") is True
    assert any(a["type"] == "create" for a in suggestion["actions"])  # and a CBC
    assert card["selectionBehavior"] == "at-most-one"


def test_intermediate_nudt15_above_the_cpic_range_offers_the_highest_dose_inside_it(
    client,
) -> None:
    """v4: 150 mg once daily at 50 kg is 3.0 mg/kg/day, above 0.6-2.4; 2.4 x 50 = 120 mg,
    rounded down to the 25 mg step: 100 mg (2 x 50 mg tablets)."""
    entry = next(e for e in order_scenarios() if e["name"].endswith("above-cpic-range"))
    _, body = call(client, request_of(entry))
    card = cards_by_rule(body["cards"])["THIOPURINE_PGX"]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("NUDT15 intermediate, TPMT normal: azathioprine 3 mg/kg/day")
    assert "no more than 2.4 mg/kg/day" in card["summary"]
    kinds = [[a["type"] for a in s["actions"]] for s in card["suggestions"]]
    assert kinds == [["delete"], ["update"]]  # NUDT15 is known: no test travels with it
    update = card["suggestions"][1]["actions"][0]["resource"]
    assert update["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 100
    assert "20-50%" not in card["detail"]  # only the tier that applies


def test_intermediate_tpmt_within_the_cpic_range_is_info_and_never_says_reduce(client) -> None:
    entry = next(e for e in order_scenarios() if e["name"].endswith("tpmt-intermediate"))
    _, body = call(client, request_of(entry))
    card = cards_by_rule(body["cards"])["THIOPURINE_PGX"]
    assert card["indicator"] == "info"
    assert "reduce" not in (card["summary"] + card["detail"]).lower()
    assert "within the CPIC starting range" in card["summary"]
    assert [s["label"] for s in card["suggestions"]] == ["Order NUDT15 (with TPMT) testing"]
    assert "1.61 mg/kg/day" in card["detail"]


def test_text_only_mercaptopurine_is_named_on_the_card(client) -> None:
    entry = next(e for e in order_scenarios() if "mercaptopurine" in e["name"])
    _, body = call(client, request_of(entry))
    card = cards_by_rule(body["cards"])["THIOPURINE_PGX"]
    assert "MERCAPTOPURINE 50 MG PO TABS" in card["detail"]
