"""FHIR R4B validation of the resources the rules read, with a bounded verdict cache.

Validating with the fhir.resources models is the single largest cost of a call (pydantic plus
fhir_core's Python validators on every nested element). An EHR sends the same resources again
and again: every chart open and every order-select/order-sign of a patient re-sends the same
years of CBCs. A verdict depends only on the resource's content, so it is remembered under a
digest of that content. Every resource reaches us through orjson (request bodies and FHIR
server answers alike), which rejects NaN and Infinity, so equal serialised bytes mean equal
content; the digest is 128-bit BLAKE2b, so a crafted collision is not a practical concern.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

# About 100 bytes an entry: 50,000 verdicts (some 150 patients' five-year histories) ~5 MB.
# CDS_VALIDATION_CACHE_SIZE sets it per worker (create_app); 0 turns the cache off.
_capacity = 50_000
_verdicts: dict[bytes, str | None] = {}
_eviction = threading.Lock()


def set_cache_size(entries: int) -> None:
    global _capacity
    with _eviction:
        _capacity = entries
        while len(_verdicts) > entries:
            del _verdicts[next(iter(_verdicts))]


def invalid_reason(resource: Mapping[str, Any]) -> str | None:
    """None when the resource is valid FHIR R4B, else a short reason naming the element."""
    if not _capacity:
        return _validate(resource)
    try:
        key = hashlib.blake2b(orjson.dumps(resource), digest_size=16).digest()
    except (orjson.JSONEncodeError, TypeError):
        return _validate(resource)  # not plain JSON data (only in-process callers): no caching
    try:
        return _verdicts[key]
    except KeyError:
        pass
    verdict = _validate(resource)
    with _eviction:  # gthread workers: iterating while another thread inserts would raise
        if len(_verdicts) >= _capacity:
            del _verdicts[next(iter(_verdicts))]  # the oldest: dicts keep insertion order
        _verdicts[key] = verdict
    return verdict


def clear_cache() -> None:
    """Forget every verdict (benchmarks measure the cold path with it)."""
    with _eviction:
        _verdicts.clear()


def _validate(resource: Mapping[str, Any]) -> str | None:
    try:
        get_fhir_model_class(str(resource.get("resourceType"))).model_validate(resource)
    except (ValidationError, KeyError, ValueError, TypeError) as error:
        first = error.errors()[0] if isinstance(error, ValidationError) else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"not valid FHIR R4 ({where or 'structure'})"
    return None
