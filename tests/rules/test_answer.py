"""The answer step (rules/answer.py): rule modes, then snoozes, then the 3-card cap."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.record import build_record
from cds_service.rules.answer import make_answer
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
    app.extensions["cds_storage"].close()


def test_a_snoozed_card_makes_room_for_the_fourth_finding(app: Flask) -> None:
    """Issue 25 item 1: four findings give 3 cards; after one is snoozed the answer has the
    other two and the fourth (before, the cap ran first and the answer had 2 cards)."""
    client: FlaskClient = app.test_client()
    status, answer = call(client, request_of(CROWDED))
    assert status == 200
    before = rules_of(answer["cards"])
    assert len(before) == 3
    snoozed = next(c for c in reversed(answer["cards"]) if c["indicator"] != "critical")
    app.extensions["cds_storage"].flush()
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
