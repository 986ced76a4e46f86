"""Parsing untrusted JSON (request bodies and FHIR server answers) with a nesting and a size cap.

orjson parses (fast, strict: no NaN or Infinity) and stops at 1024 levels by itself; the
rest of the service, the FHIR models included, recurses over what it reads, so bodies are
held to MAX_DEPTH levels, far beyond any real FHIR resource (~10).

Every value read costs time afterwards (the FHIR models validate a resource at ~15-25 µs per
element), so a document may hold at most MAX_VALUES values, counted on the bytes before they
are parsed: a 2 MB array of a million zeros is refused in milliseconds instead of costing
seconds of parsing and reading. The synthetic heavy patient (3055 resources, 2.5 MB) holds
110,000; an 8 MB body of real FHIR (CDS_MAX_CONTENT_LENGTH) ~400,000 at most.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

MAX_DEPTH = 64
MAX_VALUES = 500_000
_QUOTED = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'{}[]",')


class TooDeep(ValueError):
    """The JSON nests more than MAX_DEPTH levels."""


class TooLarge(ValueError):
    """The JSON holds more than MAX_VALUES values."""


def loads(raw: bytes, limit: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> Any:
    """The parsed value; ValueError (orjson.JSONDecodeError, TooDeep or TooLarge) when refused."""
    structure = _structure(raw)
    if _values_in(structure) > max_values:
        raise TooLarge
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise TooDeep from exc
        raise
    if not (_shallow(structure.replace(b",", b""), limit) or depth_ok(value, limit)):
        raise TooDeep
    return value


class BodyRefused(ValueError):
    """A request body that is not acceptable JSON; the message is for the client."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def loads_request_body(raw: bytes) -> Any:
    """The JSON value of a request body (every endpoint reads bodies here), or BodyRefused."""
    try:
        return loads(raw or b"")
    except TooDeep as exc:
        raise BodyRefused("the request body is nested too deeply") from exc
    except TooLarge as exc:
        raise BodyRefused(
            f"the request body holds more than {MAX_VALUES} JSON values", status=413
        ) from exc
    except ValueError as exc:  # also lone UTF-16 surrogates, which no database can store
        raise BodyRefused("the request body is not valid JSON") from exc


def brackets_shallow(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Fast and sound for valid JSON: True only if it nests fewer than `limit` levels.

    The exact walk below visits every value (~1 ms for a 0.3 MB body, the largest pure-Python
    cost of a call); these byte operations run in C (~0.3 ms). False only means "not proven":
    the walk then decides.
    1. Escapes go first (escaped backslashes, then escaped quotes): every quote left opens or
       closes a string, alternately.
    2. Only quotes, brackets and commas are kept. Dropping an adjacent pair of quotes keeps them
       alternating and loses no bracket (there was none between them); a dropped close-open
       pair only joins two strings into one. Then every quoted run is string content and is
       dropped (lab text such as "Neutrophils [#/volume]" or "{cells}/uL" is common).
    3. Innermost `[]` and `{}` pairs are stripped; one replace call strips at most one level,
       so emptying within limit - 2 calls proves the depth (a scalar is a level too).
    """
    return _shallow(_structure(raw).replace(b",", b""), limit)


def value_count(raw: bytes) -> int:
    """How many values valid JSON holds, counting each empty array or object twice (an upper
    bound: the count runs on the bytes, where `{}` and `{"a": 1}` look alike), in C speed."""
    return _values_in(_structure(raw))


def _structure(raw: bytes) -> bytes:
    """Steps 1 and 2 of `brackets_shallow`: the brackets and commas outside strings."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = raw.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in structure:
        structure = _QUOTED.sub(b"", structure)
    return structure


def _values_in(structure: bytes) -> int:
    # The top value, one more per comma, and each container's first member (or none, when
    # empty: counted anyway, see value_count).
    return 1 + structure.count(b",") + structure.count(b"[") + structure.count(b"{")


def _shallow(structure: bytes, limit: int) -> bool:
    """Step 3 of `brackets_shallow` on the brackets alone."""
    for call in range(limit - 2):
        if not structure:
            return True
        structure = structure.replace(b"{}" if call % 2 else b"[]", b"")
    return not structure


def depth_ok(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Exact, iterative depth check (the top-level value is level 1; a scalar is a level)."""
    # Level by level, keeping only containers: scalars are most of a FHIR body and cannot
    # nest. A non-empty container at the limit fails, as its children would be deeper.
    if limit < 1:
        return False
    level = [value] if isinstance(value, (dict, list)) else []
    depth = 1
    while level:
        if depth >= limit:
            return not any(level)
        deeper = []
        for item in level:
            for child in item.values() if isinstance(item, dict) else item:
                if isinstance(child, (dict, list)):
                    deeper.append(child)
        level = deeper
        depth += 1
    return True
