"""FHIR R4B validation verdicts are remembered by content, never across different content."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from cds_service.config import ConfigError, load_config
from cds_service.fhir import validation
from tests.support.builders import observation

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_cache():
    validation.clear_cache()
    yield
    validation.set_cache_size(50_000)
    validation.clear_cache()


def test_a_changed_resource_is_validated_again():
    valid = observation("751-8", 1.2)
    assert validation.invalid_reason(valid) is None
    broken = copy.deepcopy(valid)
    broken["valueQuantity"]["value"] = "one point two"
    assert "valueQuantity" in validation.invalid_reason(broken)
    # and the first verdict still stands for the unchanged resource
    assert validation.invalid_reason(valid) is None


def test_a_cached_verdict_is_the_verdict(monkeypatch):
    broken = observation("751-8", 1.2, effectiveDateTime="yesterday")
    first = validation.invalid_reason(broken)
    assert first and "effectiveDateTime" in first
    calls = []
    monkeypatch.setattr(validation, "_validate", lambda r: calls.append(r) or None)
    assert validation.invalid_reason(copy.deepcopy(broken)) == first  # equal content: cached
    assert calls == []
    validation.invalid_reason(observation("751-8", 1.3))  # new content: validated
    assert len(calls) == 1


def test_the_cache_is_bounded_and_can_be_turned_off(monkeypatch):
    validation.set_cache_size(3)
    resources = [observation("751-8", 1.0 + i / 10) for i in range(5)]
    for resource in resources:
        validation.invalid_reason(resource)
    assert len(validation._verdicts) == 3
    validation.set_cache_size(0)
    assert len(validation._verdicts) == 0
    calls = []
    monkeypatch.setattr(validation, "_validate", lambda r: calls.append(r) or None)
    validation.invalid_reason(resources[0])
    validation.invalid_reason(resources[0])
    assert len(calls) == 2 and len(validation._verdicts) == 0


def test_data_that_is_not_json_is_validated_uncached():
    odd = observation("751-8", 1.2)
    odd["valueQuantity"]["value"] = 2**70  # orjson cannot serialise it: no digest
    assert validation.invalid_reason(odd) == validation._validate(odd)
    assert len(validation._verdicts) == 0


@pytest.mark.parametrize("bad", [-1, "many", True, 1.5])
def test_cache_size_setting_is_checked(bad):
    with pytest.raises(ConfigError, match="CDS_VALIDATION_CACHE_SIZE"):
        load_config({"VALIDATION_CACHE_SIZE": bad})


def test_the_warm_up_examples_are_valid_fhir():
    for example in validation.WARM_UP_EXAMPLES:
        assert validation._validate(example) is None, example["resourceType"]


def test_warm_up_remembers_no_verdict():
    validation.take_counts()
    validation.warm_up()
    assert validation._verdicts == {}
    assert validation.take_counts() == {"hit": 0, "miss": 0, "off": 0}


def test_after_warm_up_a_first_call_imports_no_fhir_model():
    # A fresh interpreter: the FHIR model modules a call needs are imported by warm_up(), not
    # by the worker's first request (which would hold up every call beside it).
    script = """
import sys
from datetime import UTC, datetime
from cds_service.fhir import validation
from cds_service.fhir.bundles import flatten
from cds_service.knowledge import load_knowledge
from cds_service.record import build_record
from tests.support.synthetic import patient_view_request
request = patient_view_request("typical")
resources = [r for value in request["prefetch"].values() for r in flatten(value)]
knowledge = load_knowledge({})
validation.warm_up()
before = set(sys.modules)
build_record(resources, request["context"]["patientId"], datetime.now(UTC), knowledge)
print(sorted(m for m in set(sys.modules) - before if m.startswith("fhir")))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"
