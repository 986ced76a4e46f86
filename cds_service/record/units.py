"""Unit normalisation: cell counts to 10^9/L, temperatures to Cel, weights to kg.

Units are converted by their name only, never guessed from the magnitude (a WBC of 50 /uL is
0.05 x10^9/L). Lab display strings go through the alias table in knowledge/units.yaml first
(that is also where the UCUM traps `K/uL` and `G/L` are caught), then through the parser of
the count-unit family `[x]10<sep>n/<volume>` (clinical rules §2.3: `x10E9/L`, `x 10^9/L`,
`10*6/mL`, `K/µL`, `thou/uL`, `/nL` ...), which computes the factor from the name; the UCUM
library sees only what neither recognises. Anything else is "unknown unit" and the caller
reports it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ucumvert import PintUcumRegistry

COUNT_TARGET = "10*9/L"


@dataclass(frozen=True)
class Converted:
    value: float
    unit_received: str


# pint and the UCUM parser are not thread-safe (two threads building the registry at once
# raise RedefinitionError under gunicorn's threads): every use goes through this lock. After
# warm_up() the hot path hits the caches and holds it only for a conversion.
_PINT_LOCK = threading.RLock()


_REGISTRY: list[PintUcumRegistry] = []


def _registry() -> PintUcumRegistry:
    # Building the registry parses the UCUM grammar (~0.7 s): once per process.
    with _PINT_LOCK:
        if not _REGISTRY:
            _REGISTRY.append(PintUcumRegistry())
        return _REGISTRY[0]


def warm_up() -> None:
    """Build the registry and parse the usual units before the first request needs them."""
    for code in ("Cel", "[degF]", "kg", "[lb_av]", COUNT_TARGET, "10*3/uL", "/uL"):
        _ucum_unit(code)
    _ucum_factor("10*3/uL", COUNT_TARGET)


@lru_cache(maxsize=256)
def _ucum_factor(code: str, target: str) -> float | None:
    """Multiplicative factor from a UCUM code to `target`, or None if it is not convertible."""
    registry = _registry()
    try:
        with _PINT_LOCK:
            quantity = 1 * registry.from_ucum(code)
            return float(quantity.to(registry.from_ucum(target)).magnitude)
    except Exception:  # noqa: BLE001 - any parse or dimensionality failure means "not this unit"
        return None


def received_unit(quantity: Mapping[str, Any]) -> str:
    """The unit as the lab sent it, for evidence text: the display, else the code."""
    return str(quantity.get("unit") or quantity.get("code") or "").strip()


def _candidates(quantity: Mapping[str, Any]) -> list[str]:
    """Unit strings to try, UCUM code first (what machines read), then the display text."""
    seen: list[str] = []
    for key in ("code", "unit"):
        text = str(quantity.get(key) or "").strip()
        if text and text not in seen:
            seen.append(text)
    return seen


# The count-unit family (clinical rules §2.3). Micro sign U+00B5 and Greek mu U+03BC are one
# letter; `mc` is micro; superscript digits are exponents. The exponent needs a separator
# (`^`, `*`, `**`, `E`, `(n)` or a superscript): a bare "109/L" is not read as 10^9/L.
_MICRO = str.maketrans({"\u00b5": "u", "\u03bc": "u", "\u00d7": "x"})
_SUPERSCRIPTS = "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
_SUPERSCRIPT = re.compile(f"[{_SUPERSCRIPTS}]+")
_SUPERSCRIPT_DIGITS = str.maketrans(_SUPERSCRIPTS, "0123456789")
_EXPONENT = r"(?:x\s*)?10\s*(?:\^|\*\*|\*|e|(?=\())\s*\(?\s*(?P<exp>\d{1,2})\s*\)?"
_KILO_WORDS = {"k": 1e3, "thou": 1e3, "thousand": 1e3}  # case-insensitive lab words
_GIGA_WORDS = {"G": 1e9, "Gpt": 1e9, "GPT": 1e9}  # case-sensitive: g/L is grams per litre
_CELLS = r"(?:cells|\{cells\}|\{#\}|#|1)?"
_VOLUME_LITRES = {
    "l": 1.0,
    "dl": 1e-1,
    "ml": 1e-3,
    "ul": 1e-6,
    "mcl": 1e-6,
    "nl": 1e-9,
    "mm3": 1e-6,
    "mm^3": 1e-6,
    "cumm": 1e-6,
    "cu mm": 1e-6,
}
_COUNT_UNIT = re.compile(
    rf"^(?:(?:{_EXPONENT})\s*{_CELLS}|(?P<word>[A-Za-z]+)|{_CELLS})\s*/\s*(?P<volume>[a-z^3 ]+?)$",
    re.IGNORECASE,
)


@lru_cache(maxsize=512)
def parse_count_unit(text: str) -> float | None:
    """Factor to 10^9/L of a count unit spelled in the `[x]10<sep>n/<volume>` family, a
    kilo/giga word per volume (`K/uL`, `thou/mm3`, `G/L`) or cells per volume (`/uL`,
    `cells/mm3`); None for anything else (never guessed)."""
    unit = _SUPERSCRIPT.sub(
        lambda m: "^" + m.group().translate(_SUPERSCRIPT_DIGITS), text.translate(_MICRO)
    )
    match = _COUNT_UNIT.match(" ".join(unit.split()))
    if match is None:
        return None
    volume = _VOLUME_LITRES.get(match.group("volume").strip().lower())
    if volume is None:
        return None
    word = match.group("word")
    if match.group("exp") is not None:
        per_volume = 10.0 ** int(match.group("exp"))
    elif word is not None and word.lower() == "cells":
        per_volume = 1.0
    elif word is not None:
        giga = _GIGA_WORDS.get(word) if volume == 1.0 else None
        per_word = giga or _KILO_WORDS.get(word.lower())
        if per_word is None:
            return None
        per_volume = per_word
    else:
        per_volume = 1.0
    return float(f"{per_volume / volume / 1e9:.12g}")


# The factors of clinical rules §2.3 table. A UCUM code that converts with any other
# factor is not a blood count unit as labs send them: "109/L" is valid UCUM (109 per litre)
# but is a lost superscript of 10^9/L, and reading it literally would make every count
# critically low.
_COUNT_FACTORS = (1.0, 0.001)


def _count_factor_of(unit: str, aliases: Mapping[str, float]) -> float | None:
    if unit in aliases:
        return float(aliases[unit])
    parsed = parse_count_unit(unit)
    if parsed is not None:
        return parsed
    factor = _ucum_factor(unit, COUNT_TARGET)
    if factor is None or not any(abs(factor - f) <= f * 1e-9 for f in _COUNT_FACTORS):
        return None
    return factor


def count_factor(quantity: Mapping[str, Any], aliases: Mapping[str, float]) -> float | None:
    """Factor that turns this quantity's value into 10^9/L, or None when the unit is unknown.

    Aliases win over UCUM so `K/uL` is never read as kelvin per microlitre. When the code and
    the display text both name a unit and they disagree, the unit is unknown: neither is trusted.
    """
    factors = {_count_factor_of(unit, aliases) for unit in _candidates(quantity)}
    factors.discard(None)
    return factors.pop() if len(factors) == 1 else None


def is_percent(quantity: Mapping[str, Any], percent_units: list[str]) -> bool:
    return any(unit in percent_units for unit in _candidates(quantity))


@lru_cache(maxsize=256)
def _ucum_unit(code: str) -> Any:
    """The parsed UCUM unit, or None; parsing is the slow part (~1 ms), so it is cached."""
    try:
        registry = _registry()
        with _PINT_LOCK:
            return registry.from_ucum(code).units
    except Exception:  # noqa: BLE001 - any parse failure means "not a UCUM unit"
        return None


def _ucum_convert(value: float, code: str, target: str) -> float | None:
    """Convert with the UCUM library, offset scales (Cel, [degF]) included."""
    if code == target:
        return value
    source_unit, target_unit = _ucum_unit(code), _ucum_unit(target)
    if source_unit is None or target_unit is None:
        return None
    try:
        registry = _registry()
        with _PINT_LOCK:
            return float(registry.Quantity(value, source_unit).to(target_unit).magnitude)
    except Exception:  # noqa: BLE001 - a dimensionality failure means "not this unit"
        return None


def _convert(quantity: Mapping[str, Any], aliases: Mapping[str, str], target: str) -> float | None:
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    for unit in _candidates(quantity):
        converted = _ucum_convert(float(value), aliases.get(unit, unit), target)
        if converted is not None:
            return converted
    return None


def to_celsius(quantity: Mapping[str, Any], aliases: Mapping[str, str]) -> float | None:
    return _convert(quantity, aliases, "Cel")


def to_kilograms(quantity: Mapping[str, Any], aliases: Mapping[str, str]) -> float | None:
    return _convert(quantity, aliases, "kg")
