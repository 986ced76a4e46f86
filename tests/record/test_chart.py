"""One chart per call: each Observation is classified once (its result, code and time) for the
reading plan and the readers alike, and what it says is read at most once, even when the lean
record falls short and the full one is built."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cds_service.knowledge import load_knowledge
from cds_service.record import build_record, chart, terminology
from cds_service.record.reading_plan import ReadingPlan
from cds_service.rules.reading import READING_NEEDS
from tests.support.synthetic import patient_view_request

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
KNOWLEDGE = load_knowledge()


@pytest.fixture(scope="module")
def heavy() -> list[dict[str, Any]]:
    """Eight years of weekly CBCs and vitals: the plan leaves most of it unread."""
    found = []
    for value in patient_view_request("heavy", now=NOW)["prefetch"].values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            found += [entry["resource"] for entry in value["entry"]]
        elif isinstance(value, dict):
            found.append(value)
    return found


def observations(resources: list[dict[str, Any]]) -> int:
    return sum(r["resourceType"] == "Observation" for r in resources)


def counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[Any]:
    calls: list[Any] = []
    original = getattr(module, name)

    def counted(*args: Any) -> Any:
        calls.append(args[0])
        return original(*args)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_each_observation_is_classified_once_for_the_plan_and_the_readers(heavy, monkeypatch):
    classified = counting(monkeypatch, terminology, "analyte_of")
    record = build_record(heavy, "bench-heavy", NOW, KNOWLEDGE, only_what_rules_read=READING_NEEDS)
    assert record.latest("wbc") is not None
    assert len(classified) == observations(heavy)


def test_an_observation_is_read_once_when_the_lean_record_falls_short(heavy, monkeypatch):
    full = build_record(heavy, "bench-heavy", NOW, KNOWLEDGE)
    monkeypatch.setattr(ReadingPlan, "holds_for", lambda self, record: False)
    validated = counting(monkeypatch, chart, "invalid_reason")
    record = build_record(heavy, "bench-heavy", NOW, KNOWLEDGE, only_what_rules_read=READING_NEEDS)
    assert len(validated) == len({id(resource) for resource in validated})  # none twice
    assert len(validated) == observations(heavy)  # the full record read them all
    assert record.counts == full.counts
    assert record.unusable == full.unusable


def test_what_a_skipped_observation_says_is_never_read(heavy, monkeypatch):
    validated = counting(monkeypatch, chart, "invalid_reason")
    build_record(heavy, "bench-heavy", NOW, KNOWLEDGE, only_what_rules_read=READING_NEEDS)
    assert 0 < len(validated) < observations(heavy) / 4
