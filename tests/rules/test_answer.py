"""The answer step (rules/answer.py): rule modes, then snoozes, then the 3-card cap."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.record import build_record
from cds_service.rules.answer import make_answer
from cds_service.rules.base import Finding, SuggestedOrder
from cds_service.runtime import runtime
from cds_service.services import load_services
from tests.support.builders import ANC, NOW, PATIENT, WBC, observation, sle
from tests.support.scenarios import SCENARIOS, call, request_of

CROWDED = next(s for s in SCENARIOS if "capped-at-three" in s["file"])
FEEDBACK = "/cds-services/leukopenia-patient-view/feedback"
ALREADY_ADDRESSED = {
    "system": "https://leukopenia-cds.example.org/CodeSystem/override-reason",
    "code": "already-addressed",
}


def rules_of(cards: list[dict[str, Any]]) -> list[str]:
    return [card["source"]["topic"]["code"] for card in cards]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp_path}/cds.sqlite3"})
    yield app
    runtime(app).storage.close()


def test_a_snoozed_card_makes_room_for_the_fourth_finding(app: Flask) -> None:
    """Issue 25 item 1: four findings give 3 cards; after one is snoozed the answer has the
    other two and the fourth (before, the cap ran first and the answer had 2 cards)."""
    client: FlaskClient = app.test_client()
    status, answer = call(client, request_of(CROWDED))
    assert status == 200
    before = rules_of(answer["cards"])
    assert len(before) == 3
    snoozed = next(c for c in reversed(answer["cards"]) if c["indicator"] != "critical")
    runtime(app).storage.flush()
    feedback = {
        "card": snoozed["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": datetime.now(UTC).isoformat(),
        "overrideReason": {"reason": ALREADY_ADDRESSED},
    }
    assert client.post(FEEDBACK, json={"feedback": [feedback]}).status_code == 200
    status, answer = call(client, request_of(CROWDED))
    after = rules_of(answer["cards"])
    rule = snoozed["source"]["topic"]["code"]
    assert rule not in after
    assert [r for r in before if r != rule] == [r for r in after if r in before]
    assert len(after) == 3  # the fourth finding, held back by the cap before, is shown
    assert [r for r in after if r not in before] == ["DATA_QUALITY"]


def _crowded_record() -> Any:
    from cds_service.knowledge import load_knowledge

    knowledge = load_knowledge()
    request = request_of(CROWDED)
    resources = [
        entry["resource"]
        for bundle in request["prefetch"].values()
        if bundle
        for entry in bundle.get("entry", [])
    ]
    now = datetime.fromisoformat("2026-01-15T12:00:00+00:00")  # the fixtures' anchor
    return build_record(resources, request["context"]["patientId"], now, knowledge), knowledge


def test_the_crowded_fixture_has_four_findings_and_the_cap_shows_three() -> None:
    """The fixture proves the cap (issue 11): four independent problems, three cards, the
    lowest (an info card, catalogue order) left out."""
    from cds_service.rules import evaluate_rules

    record, knowledge = _crowded_record()
    rules = load_services()["leukopenia-patient-view"].rules
    found = [f.rule for f in evaluate_rules(record, knowledge, "patient-view", rules)]
    assert len(found) == 4
    answer = make_answer(record, knowledge, "patient-view", rules)
    assert [f.rule for f in answer.cards] == [
        "METHOTREXATE_DAILY_DOSING",
        "DRUG_CYTOPENIA_DOSE_REVIEW",
        "THIOPURINE_PGX",
    ]


def _cbc(priority: str) -> SuggestedOrder:
    return SuggestedOrder("cbc", priority, "Order CBC with differential")  # type: ignore[arg-type]


def _finding(rule: str, indicator: str, *orders: SuggestedOrder) -> Finding:
    return Finding(indicator, "s", [], ["r"], ["ctcae_v5"], orders=list(orders), rule=rule)  # type: ignore[arg-type]


def _answer_of(
    monkeypatch: pytest.MonkeyPatch, findings: list[Finding], hook: str, **kwargs: Any
) -> Any:
    """make_answer over fixed findings: the answer step alone (rules/answer.py)."""
    from cds_service.rules import answer as answer_module

    monkeypatch.setattr(answer_module, "evaluate_rules", lambda *_: findings)
    record, knowledge = _severe_neutropenia_record()
    rules = [f.rule for f in findings]
    return make_answer(record, knowledge, hook, rules, **kwargs)


def test_a_snoozed_card_never_carries_the_only_cbc_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """One CBC order per answer (v4) is chosen among the cards shown, after snoozes: with the
    upper card snoozed the lower one keeps its own order instead of pointing "above"."""
    upper = _finding("NEUTROPENIA_MODERATE", "warning", _cbc("urgent"))
    lower = _finding("CBC_STALE", "warning", _cbc("routine"))
    shown = _answer_of(monkeypatch, [upper, lower], "patient-view").cards
    assert [o.kind for o in shown[0].orders] == ["cbc"] and shown[1].orders == []
    assert "CBC order offered on the card above." in shown[1].recommendations

    upper = _finding("NEUTROPENIA_MODERATE", "warning", _cbc("urgent"))
    lower = _finding("CBC_STALE", "warning", _cbc("routine"))
    answer = _answer_of(
        monkeypatch, [upper, lower], "patient-view", snoozed=lambda _: {"NEUTROPENIA_MODERATE"}
    )
    [card] = answer.cards
    assert card.rule == "CBC_STALE" and [o.priority for o in card.orders] == ["routine"]
    assert "CBC order offered on the card above." not in card.recommendations
    # The snoozed finding is recorded as it was made, not rewritten by the answer step.
    assert [o.kind for o in answer.snoozed[0].orders] == ["cbc"]


def test_order_hooks_rank_data_missing_then_indicator_then_the_draft_card(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cds_service.rules import answer as answer_module

    findings = [
        _finding("NEUTROPENIA_SEVERE", "critical", _cbc("stat")),
        _finding("ORDER_MYELOTOXIC_LOW_COUNTS", "critical", _cbc("stat")),
        _finding("ORDER_NO_RECENT_CBC", "info"),
        _finding("DATA_QUALITY", "warning"),
    ]
    monkeypatch.setattr(answer_module, "evaluate_rules", lambda *_: findings)
    record, knowledge = _severe_neutropenia_record()
    missing = replace(record, unavailable={"counts": "the FHIR read failed"})
    rules = [f.rule for f in findings]
    order = make_answer(missing, knowledge, "order-sign", rules).cards
    assert [f.rule for f in order] == [
        "DATA_QUALITY",
        "ORDER_MYELOTOXIC_LOW_COUNTS",
        "NEUTROPENIA_SEVERE",
    ]
    # The draft card, now highest among the cards offering one, carries the only CBC order.
    assert [o.kind for o in order[1].orders] == ["cbc"] and order[2].orders == []
    patient = make_answer(missing, knowledge, "patient-view", rules).cards
    assert [f.rule for f in patient][:2] == ["DATA_QUALITY", "NEUTROPENIA_SEVERE"]


def _severe_neutropenia_record() -> Any:
    from cds_service.knowledge import load_knowledge

    knowledge = load_knowledge()
    resources = [sle(), observation(WBC, 1.5), observation(ANC, 0.3)]
    return build_record(resources, PATIENT, NOW, knowledge), knowledge


def test_critical_cards_are_never_asked_about_nor_snoozed() -> None:
    record, knowledge = _severe_neutropenia_record()
    asked: list[frozenset[str]] = []

    def snooze_everything(rule_ids: frozenset[str]) -> set[str]:
        asked.append(rule_ids)
        return {"NEUTROPENIA_SEVERE", *rule_ids}

    rules = ["NEUTROPENIA_SEVERE", "LEUKOPENIA_MONITOR", "CBC_STALE"]
    answer = make_answer(record, knowledge, "patient-view", rules, snoozed=snooze_everything)
    assert [f.rule for f in answer.cards] == ["NEUTROPENIA_SEVERE"]
    assert all("NEUTROPENIA_SEVERE" not in ids for ids in asked)


def test_a_silent_rule_neither_shows_nor_suppresses_a_live_one() -> None:
    """Precedence on live cards only: a silent card must not absorb the live card it would
    otherwise take the place of."""
    record, knowledge = _severe_neutropenia_record()
    rules = ["NEUTROPENIA_SEVERE", "LEUKOPENIA_MONITOR"]
    live = make_answer(record, knowledge, "patient-view", rules)
    assert [f.rule for f in live.cards] == ["NEUTROPENIA_SEVERE"]
    assert live.all_live is None and live.silent == ()
    pilot = make_answer(record, knowledge, "patient-view", rules, {"NEUTROPENIA_SEVERE": "silent"})
    assert [f.rule for f in pilot.silent] == ["NEUTROPENIA_SEVERE"]
    assert "NEUTROPENIA_SEVERE" not in [f.rule for f in pilot.cards]
    assert pilot.all_live == ("NEUTROPENIA_SEVERE",)  # what the answer would have been
    off = make_answer(record, knowledge, "patient-view", rules, {"NEUTROPENIA_SEVERE": "off"})
    assert [f.rule for f in off.cards] == [f.rule for f in pilot.cards]
    assert off.silent == () and off.all_live is None


def test_a_failing_silent_rule_leaves_the_live_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    from cds_service.rules import answer as answer_module

    record, knowledge = _severe_neutropenia_record()
    real = answer_module.evaluate_rules

    def failing_with_every_rule(record: Any, knowledge: Any, hook: str, ids: Any) -> Any:
        if "CBC_STALE" in ids:
            raise RuntimeError("a bug in the rule under evaluation")
        return real(record, knowledge, hook, ids)

    monkeypatch.setattr(answer_module, "evaluate_rules", failing_with_every_rule)
    rules = ["NEUTROPENIA_SEVERE", "CBC_STALE"]
    answer = make_answer(record, knowledge, "patient-view", rules, {"CBC_STALE": "silent"})
    assert [f.rule for f in answer.cards] == ["NEUTROPENIA_SEVERE"]
    assert answer.silent == () and answer.all_live is None
