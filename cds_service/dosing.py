"""Daily dose from a FHIR Dosage (clinical spec §2.5).

Daily dose = dose x frequency / period. A tablet dose needs the tablet strength from the
shipped product table; anything that cannot be computed is said, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.knowledge import Product

_PERIOD_DAYS = {
    "s": 1 / 86400,
    "min": 1 / 1440,
    "h": 1 / 24,
    "d": 1.0,
    "wk": 7.0,
    "mo": 30.0,
    "a": 365.0,
}
_MG_PER_UNIT = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001}
_TABLET_UNITS = {
    "{tbl}",
    "tbl",
    "tab",
    "tabs",
    "tablet",
    "tablets",
    "{tablet}",
    "{capsule}",
    "capsule",
}


@dataclass(frozen=True)
class DailyDose:
    mg_per_day: float | None
    description: str  # how it was computed, or why it could not be


def _dose_quantity(dosage: Mapping[str, Any]) -> Mapping[str, Any] | None:
    dose_and_rate = dosage.get("doseAndRate")
    if isinstance(dose_and_rate, Mapping):  # a known error in published R4 examples
        dose_and_rate = [dose_and_rate]
    for entry in dose_and_rate or []:
        if not isinstance(entry, Mapping):
            continue
        if isinstance(entry.get("doseQuantity"), Mapping):
            return entry["doseQuantity"]
        dose_range = entry.get("doseRange")
        if isinstance(dose_range, Mapping) and isinstance(dose_range.get("high"), Mapping):
            return dose_range["high"]  # the upper bound is what the marrow may receive
    if isinstance(dosage.get("doseQuantity"), Mapping):  # STU3 shape sent as R4
        return dosage["doseQuantity"]
    return None


def _unit(quantity: Mapping[str, Any]) -> str:
    return str(quantity.get("code") or quantity.get("unit") or "").strip().lower()


def daily_dose(dosages: Any, product: Product | None) -> DailyDose:
    if not isinstance(dosages, list) or not dosages or not isinstance(dosages[0], Mapping):
        return DailyDose(None, "no dosage instructions")
    dosage = dosages[0]
    quantity = _dose_quantity(dosage)
    value = quantity.get("value") if quantity else None
    if quantity is None or isinstance(value, bool) or not isinstance(value, int | float):
        return DailyDose(None, "dose not stated")
    unit = _unit(quantity)
    if unit in _MG_PER_UNIT:
        dose_mg = float(value) * _MG_PER_UNIT[unit]
        dose_text = f"{value:g} {quantity.get('unit') or unit}"
    elif unit in _TABLET_UNITS and product and product.strength_mg:
        dose_mg = float(value) * product.strength_mg
        dose_text = f"{value:g} x {product.strength_mg:g} mg {product.form or 'tablet'}"
    else:
        return DailyDose(None, f"dose unit {unit or 'missing'} cannot be converted to mg")
    repeat = (
        ((dosage.get("timing") or {}).get("repeat") or {})
        if isinstance(dosage.get("timing"), Mapping)
        else {}
    )
    period_unit = repeat.get("periodUnit")
    if period_unit not in _PERIOD_DAYS:
        return DailyDose(None, f"{dose_text} with no usable frequency")
    frequency = repeat.get("frequency") or 1
    period = repeat.get("period") or 1
    if not isinstance(frequency, int | float) or not isinstance(period, int | float) or period <= 0:
        return DailyDose(None, f"{dose_text} with no usable frequency")
    per_day = dose_mg * frequency / (period * _PERIOD_DAYS[period_unit])
    return DailyDose(per_day, f"{dose_text} x {frequency:g} per {period:g} {period_unit}")
