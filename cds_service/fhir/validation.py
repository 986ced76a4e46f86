"""FHIR R4B validation of the resources the rules read, with a bounded verdict cache.

Validating with the fhir.resources models is the single largest cost of a call (pydantic plus
fhir_core's Python validators on every nested element). An EHR sends the same resources again
and again: every chart open and every order-select/order-sign of a patient re-sends the same
years of CBCs. A verdict depends only on the resource's content, so it is remembered under a
digest of that content. Every resource reaches us through orjson (request bodies and FHIR
server answers alike), which rejects NaN and Infinity, so equal serialised bytes mean equal
content; the digest is 128-bit BLAKE2b, so a crafted collision is not a practical concern.

Validation costs ~15-25 µs per JSON value, so a resource of more than MAX_RESOURCE_VALUES values
is not validated but refused as too large (its value count is read on its serialised bytes, in
C speed): one resource can then cost at most ~0.1-0.2 s, and the call's deadline is checked
between resources (`record.build`). Real resources hold tens to a few hundred values (a panel
with 30 components, each with its reference range and extensions, ~1,500).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from cds_service.protocol import json_body

MAX_RESOURCE_VALUES = 10_000

# About 100 bytes an entry: 50,000 verdicts (some 150 patients' five-year histories) ~5 MB.
# CDS_VALIDATION_CACHE_SIZE sets it per worker (create_app); 0 turns the cache off.
_capacity = 50_000
_verdicts: dict[bytes, str | None] = {}
_lock = threading.Lock()
# Verdicts remembered (hit), computed and remembered (miss) or computed only (off), since the
# last take_counts(): the API hands them to /metrics after each call.
_counts = {"hit": 0, "miss": 0, "off": 0}


# One small valid resource of each kind the record's readers validate, using the elements
# they read. Model classes and their element types are imported and built on first use
# (~0.25 s in all, holding up a worker's first call and, in a gevent worker, every call beside
# it): `warm_up()` validates these before the first request.
_CONCEPT = {"coding": [{"system": "http://loinc.org", "code": "26499-4"}], "text": "example"}
_SUBJECT = {"reference": "Patient/example"}
_QUANTITY = {"value": 1, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
_DOSAGE = {
    "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
    "route": _CONCEPT,
    "doseAndRate": [{"doseQuantity": _QUANTITY}],
}
WARM_UP_EXAMPLES: tuple[dict[str, Any], ...] = (
    {
        "resourceType": "Observation",
        "status": "final",
        "code": _CONCEPT,
        "subject": _SUBJECT,
        "effectiveDateTime": "2026-01-01T08:00:00Z",
        "valueQuantity": _QUANTITY,
        "interpretation": [_CONCEPT],
    },
    {"resourceType": "Condition", "code": _CONCEPT, "subject": _SUBJECT},
    {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": _CONCEPT,
        "subject": _SUBJECT,
        "dosage": [_DOSAGE],
    },
    {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "Medication/example"},
        "subject": _SUBJECT,
        "dosageInstruction": [_DOSAGE],
    },
    {
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": _CONCEPT,
        "subject": _SUBJECT,
        "effectiveDateTime": "2026-01-01T08:00:00Z",
        "dosage": {"dose": _QUANTITY, "route": _CONCEPT},
    },
    {"resourceType": "Medication", "code": _CONCEPT},
)


def warm_up() -> None:
    """Build the model classes the readers use (the verdicts are not remembered)."""
    for example in WARM_UP_EXAMPLES:
        _validate(example)


def set_cache_size(entries: int) -> None:
    global _capacity
    with _lock:
        _capacity = entries
        while _verdicts and len(_verdicts) > entries:
            del _verdicts[next(iter(_verdicts))]


def take_counts() -> dict[str, int]:
    """Validations by cache outcome since the last call (and resets them)."""
    with _lock:
        counts = dict(_counts)
        _counts.update(hit=0, miss=0, off=0)
    return counts


def invalid_reason(resource: Mapping[str, Any]) -> str | None:
    """None when the resource is valid FHIR R4B, else a short reason naming the element."""
    serialised = _serialised(resource)
    if serialised is None or not _capacity:
        _count("off")
        return _verdict(resource, serialised)
    key = hashlib.blake2b(serialised, digest_size=16).digest()
    try:
        remembered = _verdicts[key]  # one lookup: another thread may evict it meanwhile
    except KeyError:
        pass
    else:
        _count("hit")
        return remembered
    verdict = _verdict(resource, serialised)
    with _lock:  # gthread workers: iterating while another thread inserts would raise
        while _verdicts and len(_verdicts) >= _capacity:
            del _verdicts[next(iter(_verdicts))]  # the oldest: dicts keep insertion order
        _verdicts[key] = verdict
        _counts["miss"] += 1
    return verdict


def _serialised(resource: Mapping[str, Any]) -> bytes | None:
    try:
        return orjson.dumps(resource)
    except (orjson.JSONEncodeError, TypeError):
        return None  # not plain JSON data (only in-process callers): not cached


def _verdict(resource: Mapping[str, Any], serialised: bytes | None) -> str | None:
    if serialised is not None and json_body.value_count(serialised) > MAX_RESOURCE_VALUES:
        return f"too large to check (more than {MAX_RESOURCE_VALUES} JSON values)"
    return _validate(resource)


def _count(outcome: str) -> None:
    with _lock:
        _counts[outcome] += 1


def clear_cache() -> None:
    """Forget every verdict (benchmarks measure the cold path with it)."""
    with _lock:
        _verdicts.clear()


def _validate(resource: Mapping[str, Any]) -> str | None:
    try:
        get_fhir_model_class(str(resource.get("resourceType"))).model_validate(resource)
    except (ValidationError, KeyError, ValueError, TypeError) as error:
        first: Mapping[str, Any] = error.errors()[0] if isinstance(error, ValidationError) else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"not valid FHIR R4 ({where or 'structure'})"
    return None
