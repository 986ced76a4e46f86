"""A resource too large to validate in bounded time is refused before validation, and is then
reported like any invalid resource (never silently used or dropped)."""

from __future__ import annotations

import orjson
import pytest

from cds_service.fhir import validation
from cds_service.fhir.gather import gather
from cds_service.knowledge import load_knowledge
from cds_service.protocol import json_body
from cds_service.record import build_record
from cds_service.rules import evaluate_rules
from tests.support.builders import (
    AZATHIOPRINE,
    NOW,
    PATIENT,
    WBC,
    medication_request,
    observation,
    sle,
)

from .conftest import CONTEXT, FHIR_SERVER, TOKEN, full_prefetch, searchset

FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture(autouse=True)
def fresh_cache():
    validation.clear_cache()
    yield
    validation.clear_cache()


def noted(values: int) -> dict:
    """A valid WBC result with notes, holding `values` JSON values or one more."""
    obs = observation(WBC, 3.2)
    base = json_body.value_count(orjson.dumps(obs))
    notes = max(0, values - base - 1) // 2  # the list, then two values per note
    obs["note"] = [{"text": "repeat"}] * notes
    return obs


@pytest.mark.parametrize("offset, refused", [(-1, False), (0, False), (1, True)])
def test_resource_value_limit_edges(monkeypatch, offset, refused):
    obs = noted(200)
    size = json_body.value_count(orjson.dumps(obs))
    monkeypatch.setattr(validation, "MAX_RESOURCE_VALUES", size - offset)
    validated = []
    real = validation._validate
    monkeypatch.setattr(validation, "_validate", lambda r: validated.append(r) or real(r))
    reason = validation.invalid_reason(obs)
    if refused:
        assert reason == f"too large to check (more than {size - 1} JSON values)"
        assert validated == []  # refused before the models see it
    else:
        assert reason is None
        assert len(validated) == 1


def test_the_verdict_on_a_too_large_resource_is_remembered(monkeypatch):
    obs = noted(validation.MAX_RESOURCE_VALUES + 2)
    assert validation.invalid_reason(obs).startswith("too large to check")
    monkeypatch.setattr(json_body, "value_count", lambda raw: pytest.fail("counted again"))
    assert validation.invalid_reason(obs).startswith("too large to check")


def test_a_too_large_count_becomes_a_data_quality_finding():
    knowledge = load_knowledge()
    huge = noted(100_000)
    resources = [sle(), medication_request(AZATHIOPRINE), huge]
    record = build_record(resources, PATIENT, NOW, knowledge)
    assert record.latest("wbc") is None  # the value is not read
    [unusable] = record.unusable
    assert "too large to check" in unusable.reason
    findings = evaluate_rules(record, knowledge, "patient-view", ["DATA_QUALITY"])
    assert [f.rule for f in findings] == ["DATA_QUALITY"]
    assert any("too large to check" in line for line in findings[0].evidence)


def test_a_fetched_page_over_the_value_limit_is_a_failed_read(templates, config, fhir):
    # A 2 MB page of a million values once cost a hook call 12 s of reading; it is now refused
    # as it arrives, and the key is "could not be retrieved" (the DATA_QUALITY path).
    huge = observation(WBC, 3.2) | {"interpretation": [0] * 600_000}
    fhir.get(f"{FHIR_SERVER}/Observation", body=orjson.dumps(searchset(huge)), headers=FHIR_JSON)
    prefetch = {k: v for k, v in full_prefetch(templates).items() if k != "counts"}
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config)
    assert gathered.unavailable == {
        "counts": "the FHIR server sent too many JSON values in one answer"
    }
    assert "counts" not in gathered.resources
