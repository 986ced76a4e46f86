"""Unit normalisation: cell counts to 10^9/L, temperatures to Cel, weights to kg.

Units are converted by their name only, never guessed from the magnitude (a WBC of 50 /uL is
0.05 x10^9/L). Lab display strings go through the alias table in knowledge/units.yaml first
(that is also where the UCUM traps `K/uL` and `G/L` are caught); real UCUM codes go through
a UCUM library. Anything else is "unknown unit" and the caller reports it.
"""

from __future__ import annotations

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


def _count_factor_of(unit: str, aliases: Mapping[str, float]) -> float | None:
    if unit in aliases:
        return float(aliases[unit])
    return _ucum_factor(unit, COUNT_TARGET)


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
