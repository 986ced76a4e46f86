"""Reading only the Observations the rules can reach gives the same cards as reading all, and
every window the rules read back over is declared (cds_service/rules/reading.py)."""

from __future__ import annotations

import ast
import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cds_service.cards import render_card
from cds_service.config import load_config
from cds_service.knowledge import load_knowledge
from cds_service.record import build_record
from cds_service.rules import evaluate_rules
from cds_service.rules.reading import NOT_LOOK_BACKS, READING_NEEDS
from cds_service.services import load_site
from tests.support.synthetic import patient_view_request

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def setup():
    config = load_config({"ENV": "testing"})
    knowledge, services = load_site(config.site_dir)
    return knowledge, services["leukopenia-patient-view"]


def _resources(request: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for value in request["prefetch"].values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            found += [entry["resource"] for entry in value["entry"]]
        elif isinstance(value, dict):
            found.append(value)
    return found


def _cards(resources, setup, lean: bool, knowledge=None) -> list[dict[str, Any]]:
    knowledge, service = knowledge or setup[0], setup[1]
    record = build_record(
        resources,
        "bench-typical",
        NOW,
        knowledge,
        only_what_rules_read=READING_NEEDS if lean else None,
    )
    findings = evaluate_rules(record, knowledge, service.hook, service.rules)
    cards = [render_card(f, "bench-typical", knowledge) for f in findings]
    return _without_uuids(cards)


def _without_uuids(value: Any) -> Any:
    """Cards and suggestions get fresh uuids on every call."""
    if isinstance(value, dict):
        return {k: _without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [_without_uuids(v) for v in value]
    return value


def _counts(resources):
    return [r for r in resources if r["resourceType"] == "Observation" and "specimen" in r]


def _set_value(resource, value):
    resource["valueQuantity"]["value"] = value


def _low_history(resources):
    for resource in _counts(resources)[:40]:
        _set_value(resource, 0.4)


def _old_invalid(resources):
    _counts(resources)[-1]["valueQuantity"] = {"value": "three"}


def _sparse_recent(resources):
    # Only the 3 newest draws are recent; the rest is two years old: the trend reaches back.
    for resource in _counts(resources)[12:]:
        when = datetime.fromisoformat(resource["effectiveDateTime"].replace("Z", "+00:00"))
        resource["effectiveDateTime"] = (when - timedelta(days=730)).isoformat()


def _shared_specimen(resources):
    counts = _counts(resources)
    counts[-1]["specimen"] = dict(counts[0]["specimen"])


def _no_weights(resources):
    resources[:] = [r for r in resources if r.get("code", {}).get("text") != "Body weight"]


def _all_preliminary(resources):
    for resource in _counts(resources)[:30]:
        resource["status"] = "preliminary"


@pytest.mark.parametrize("size", ["typical", "heavy"])
@pytest.mark.parametrize(
    "change",
    [None, _low_history, _sparse_recent, _shared_specimen, _no_weights, _all_preliminary],
)  # fmt: skip
def test_same_cards_as_the_full_record(setup, size, change):
    resources = _resources(patient_view_request(size, now=NOW))
    if change:
        change(resources)
    full = _cards(copy.deepcopy(resources), setup, lean=False)
    assert _cards(resources, setup, lean=True) == full


def test_known_difference_an_old_invalid_observation_is_not_reported(setup):
    """The one difference, left for review: since every used resource is validated (invalid
    ones are listed on DATA_QUALITY whatever their date), a five-year-old invalid Observation
    is reported by the full read but never parsed by the lean one."""
    resources = _resources(patient_view_request("typical", now=NOW))
    _old_invalid(resources)
    full = _cards(copy.deepcopy(resources), setup, lean=False)
    lean = _cards(resources, setup, lean=True)
    assert [c for c in full if c["source"]["topic"]["code"] != "DATA_QUALITY"] == lean


def test_a_site_that_widens_a_window_widens_the_reading(setup):
    """The windows are read from the knowledge, site overrides included: with DATA_QUALITY
    looking back ten years, the old invalid Observation is read and reported by both."""
    wide = load_knowledge({"data_quality_lookback_days": 3650})
    resources = _resources(patient_view_request("typical", now=NOW))
    _old_invalid(resources)
    full = _cards(copy.deepcopy(resources), setup, lean=False, knowledge=wide)
    lean = _cards(resources, setup, lean=True, knowledge=wide)
    assert lean == full
    assert any(c["source"]["topic"]["code"] == "DATA_QUALITY" for c in lean)


@pytest.mark.parametrize("change", [None, _low_history, _sparse_recent])
def test_same_cards_when_a_site_moves_the_windows_apart(setup, change):
    """Each kind of result is cut at its own windows: with counts read back 150 days and
    unusable results 20, temperatures and weights older than 20 days are not parsed, and the
    cards still agree with the full record's."""
    moved = load_knowledge({"current_days": 150, "data_quality_lookback_days": 20})
    resources = _resources(patient_view_request("typical", now=NOW))
    if change:
        change(resources)
    full = _cards(copy.deepcopy(resources), setup, lean=False, knowledge=moved)
    assert _cards(resources, setup, lean=True, knowledge=moved) == full


RULES_DIR = Path(__file__).resolve().parents[2] / "cds_service" / "rules"
DURATION_UNITS = ("_days", "_hours", "_minutes")  # durations are named by their unit


def _threshold_names_in_rules(known: set[str]) -> set[str]:
    """Every threshold whose name the rules spell (read by name, or listed in a table)."""
    found: set[str] = set()
    for path in RULES_DIR.rglob("*.py"):
        if path.name == "reading.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in known:
                found.add(node.value)
    return found


def test_every_window_the_rules_read_is_declared(setup):
    """A rule reading back by a new duration must declare it in cds_service/rules/reading.py:
    as a look-back of READING_NEEDS (the reading plan then keeps those results), or in
    NOT_LOOK_BACKS when it reaches back over no older result. Otherwise the lean read could
    drop results the rule needs, and its cards would differ from the full record's."""
    knowledge, _ = setup
    durations = {
        name
        for name in _threshold_names_in_rules(set(knowledge.thresholds))
        if name.endswith(DURATION_UNITS)
    }
    declared = READING_NEEDS.thresholds() | set(NOT_LOOK_BACKS)
    assert durations - declared == set()


def test_the_declared_windows_are_thresholds_in_their_unit(setup):
    knowledge, _ = setup
    assert READING_NEEDS.thresholds().isdisjoint(NOT_LOOK_BACKS)
    for name in READING_NEEDS.thresholds() | set(NOT_LOOK_BACKS):
        assert name in knowledge.thresholds
    for window in READING_NEEDS.windows:
        assert window.threshold.endswith(f"_{window.unit}")
