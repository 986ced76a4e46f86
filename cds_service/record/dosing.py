"""Daily dose from a FHIR Dosage (clinical rules §2.5).

Daily dose = dose x frequency / period. A tablet dose needs the tablet strength from the
shipped product table; anything that cannot be computed is said, never guessed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.knowledge import Product

# Days in one FHIR `Timing.repeat.periodUnit` (clinical rules §2.5: s, min, h, d, wk, mo, a).
PERIOD_DAYS = {
    "s": 1 / 86400,
    "min": 1 / 1440,
    "h": 1 / 24,
    "d": 1.0,
    "wk": 7.0,
    "mo": 30.0,
    "a": 365.0,
}
UCUM = "http://unitsofmeasure.org"
_MG_PER_UNIT = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001}
# Countable dose units (clinical rules §3 DATA_QUALITY v3): one unit is one tablet or capsule of
# the coded product's strength. The CDS Hooks sandbox sends `{pill}`.
_TABLET_UNITS = {
    "{tbl}",
    "tbl",
    "tab",
    "tabs",
    "{tab}",
    "tablet",
    "tablets",
    "{tablet}",
    "{capsule}",
    "capsule",
    "capsules",
    "cap",
    "caps",
    "{cap}",
    "{pill}",
    "pill",
    "pills",
}


def sig3(value: float) -> str:
    """At most 3 significant digits, without an exponent: 2.14286 -> "2.14", 2000 -> "2000"
    (clinical rules §2.5 display)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    try:
        rounded = round(value, 2 - math.floor(math.log10(abs(value))))
        return f"{rounded:.6f}".rstrip("0").rstrip(".")
    except OverflowError:  # near the float limit (a mistyped dose): never a 5xx
        return f"{float(value):.3g}"


_TIMES = {1: "once", 2: "twice", 3: "three times", 4: "four times"}
_PER = {"d": "daily", "wk": "weekly", "mo": "monthly", "a": "yearly"}
_UNIT_WORD = {
    "s": "second",
    "min": "minute",
    "h": "hour",
    "d": "day",
    "wk": "week",
    "mo": "month",
    "a": "year",
}


def frequency_text(frequency: float, period: float, period_unit: str) -> str:
    """ "once weekly", "twice daily", "every 8 hours", "every 2 weeks", "3 times every 2 days"."""
    times = (
        _TIMES.get(int(frequency), f"{sig3(frequency)} times")
        if frequency == int(frequency)
        else f"{sig3(frequency)} times"
    )
    if period == 1 and period_unit in _PER:
        return f"{times} {_PER[period_unit]}"
    unit = _UNIT_WORD[period_unit]
    every = f"every {unit}" if period == 1 else f"every {sig3(period)} {unit}s"
    return every if frequency == 1 else f"{times} {every}"


@dataclass(frozen=True)
class DailyDose:
    """The dose of one order. `mg_per_day` is internal (it feeds mg/kg/day and dose
    comparisons); cards show `description`, the dose as written ("15 mg once weekly"), never
    mg/day for a weekly drug: daily-versus-weekly confusion is the classic fatal methotrexate
    error (clinical rules §2.5 display)."""

    mg_per_day: float | None
    description: str  # the dose as prescribed, or why it could not be computed
    weekly: bool = False  # given weekly or less often (periodUnit wk, or a period >= 7 days)
    microgram: bool = False  # prescribed in micrograms (G-CSF): shown in mcg
    # A countable unit ({pill}, tablet ...) whose tablet strength is unknown: the dose is
    # understood as written; only mg/kg cannot be computed (no DATA_QUALITY card for it).
    strength_unknown: bool = False
    # What an orderable reduced dose is built from (clinical rules §3 suggestions v4): one
    # dose in mg, the timing as written ("once daily"), and the product's tablet.
    per_dose_mg: float | None = None
    timing: str = ""
    tablet_mg: float | None = None
    scored: bool = False


def timing_repeat(dosage: Any) -> Mapping[str, Any]:
    """`Dosage.timing.repeat`, or {}: draft orders are read without validation, so any level
    may be missing or of the wrong type."""
    timing = dosage.get("timing") if isinstance(dosage, dict) else None
    repeat = timing.get("repeat") if isinstance(timing, dict) else None
    return repeat if isinstance(repeat, dict) else {}


def _dose_quantity(dosage: Mapping[str, Any]) -> Mapping[str, Any] | None:
    dose_and_rate = dosage.get("doseAndRate")
    if isinstance(dose_and_rate, dict):  # a known error in published R4 examples
        dose_and_rate = [dose_and_rate]
    for entry in dose_and_rate if isinstance(dose_and_rate, list) else []:
        if not isinstance(entry, dict):
            continue
        quantity = entry.get("doseQuantity")
        if isinstance(quantity, dict):
            return quantity
        dose_range = entry.get("doseRange")
        high = dose_range.get("high") if isinstance(dose_range, dict) else None
        if isinstance(high, dict):
            return high  # the upper bound is what the marrow may receive
    quantity = dosage.get("doseQuantity")
    if isinstance(quantity, dict):  # STU3 shape sent as R4
        return quantity
    return None


def _unit(quantity: Mapping[str, Any]) -> str:
    return str(quantity.get("code") or quantity.get("unit") or "").strip().lower()


def daily_dose(dosages: Any, product: Product | None) -> DailyDose:
    if not isinstance(dosages, list) or not dosages or not isinstance(dosages[0], dict):
        return DailyDose(None, "no dosage instructions")
    dosage = dosages[0]
    quantity = _dose_quantity(dosage)
    value = quantity.get("value") if quantity else None
    if quantity is None or isinstance(value, bool) or not isinstance(value, int | float):
        return DailyDose(None, "dose not stated")
    unit = _unit(quantity)
    if unit in _MG_PER_UNIT:
        dose_mg = float(value) * _MG_PER_UNIT[unit]
        shown_unit = "mcg" if unit in ("ug", "mcg") else unit
        dose_text = f"{sig3(float(value))} {shown_unit}"
    elif unit in _TABLET_UNITS and product and product.strength_mg:
        dose_mg = float(value) * product.strength_mg
        form = product.form or "tablet"
        dose_text = (
            f"{sig3(dose_mg)} mg ({sig3(float(value))} x {sig3(product.strength_mg)} mg "
            f"{form}{'s' if value != 1 else ''})"
        )
    elif unit in _TABLET_UNITS:
        dose_mg = None
        dose_text = f"{sig3(float(value))} tablet{'s' if value != 1 else ''}"
    else:
        # A unit code's braces never reach card text (v4): "{puff}" is shown as "puff".
        shown = unit.strip("{}") or "missing"
        return DailyDose(None, f"dose unit {shown} cannot be converted to mg")
    if dose_mg is not None and not math.isfinite(dose_mg):
        return DailyDose(None, "dose too large to read")  # a mistyped dose: said, not computed
    repeat = timing_repeat(dosage)
    period_unit = repeat.get("periodUnit")
    if not isinstance(period_unit, str) or period_unit not in PERIOD_DAYS:
        return DailyDose(None, f"{dose_text} with no usable frequency")
    frequency = repeat.get("frequency") or 1
    period = repeat.get("period") or 1
    if not isinstance(frequency, int | float) or not isinstance(period, int | float) or period <= 0:
        return DailyDose(None, f"{dose_text} with no usable frequency")
    period_days = period * PERIOD_DAYS[period_unit]
    prescribed = f"{dose_text} {frequency_text(float(frequency), float(period), period_unit)}"
    weekly = period_unit == "wk" or period_days >= 7
    if dose_mg is None:
        return DailyDose(
            None,
            f"{prescribed} (tablet strength unknown: mg/kg not computed)",
            weekly=weekly,
            strength_unknown=True,
        )
    return DailyDose(
        dose_mg * frequency / period_days,
        prescribed,
        weekly,
        microgram=unit in ("ug", "mcg"),
        per_dose_mg=dose_mg,
        timing=frequency_text(float(frequency), float(period), period_unit),
        tablet_mg=product.strength_mg if product else None,
        scored=bool(product and product.scored),
    )


@dataclass(frozen=True)
class ReducedOrder:
    """A copy of a draft medication order at a lower, orderable dose (an `update` action
    carries the whole resource). The dose is written in mg, never in a countable unit code
    such as `{pill}` (clinical rules §3 suggestions v4)."""

    resource: dict[str, Any]
    per_dose_mg: float
    description: str  # e.g. "25 mg (half a 50 mg tablet) once daily"


def dose_step(dose: DailyDose, ingredient_step_mg: float | None) -> float | None:
    """The smallest dose step the patient can take: half the tablet when it is scored, the
    tablet otherwise, else the ingredient's step (azathioprine 25 mg); None when unknown."""
    if dose.tablet_mg:
        return dose.tablet_mg / 2 if dose.scored else dose.tablet_mg
    return ingredient_step_mg


def round_down(value_mg: float, step_mg: float) -> float:
    return math.floor(value_mg / step_mg + 1e-9) * step_mg


def tablet_text(dose_mg: float, tablet_mg: float | None, form: str = "tablet") -> str:
    """ "25 mg (half a 50 mg tablet)", "100 mg (2 x 50 mg tablets)", or "25 mg"."""
    if not tablet_mg:
        return f"{sig3(dose_mg)} mg"
    count = dose_mg / tablet_mg
    if count == 0.5:
        how = f"half a {sig3(tablet_mg)} mg {form}"
    elif count == 1:
        how = f"one {sig3(tablet_mg)} mg {form}"
    elif count.is_integer():
        how = f"{int(count)} x {sig3(tablet_mg)} mg {form}s"
    elif (count * 2).is_integer():
        how = f"{int(count)} and a half {sig3(tablet_mg)} mg {form}s"
    else:
        return f"{sig3(dose_mg)} mg"
    return f"{sig3(dose_mg)} mg ({how})"


def _dose_quantities(dosage: dict[str, Any]) -> list[dict[str, Any]]:
    """The dose quantities of one Dosage, in the R4 shape or the known erroneous ones."""
    dose_and_rate = dosage.get("doseAndRate")
    if isinstance(dose_and_rate, dict):  # a known error in published R4 examples
        dose_and_rate = [dose_and_rate]
    found = []
    for entry in dose_and_rate if isinstance(dose_and_rate, list) else []:
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("doseQuantity"), dict):
            found.append(entry["doseQuantity"])
        dose_range = entry.get("doseRange")
        if isinstance(dose_range, dict):
            found += [dose_range[k] for k in ("low", "high") if isinstance(dose_range.get(k), dict)]
    if isinstance(dosage.get("doseQuantity"), dict):  # STU3 shape sent as R4
        found.append(dosage["doseQuantity"])
    return [q for q in found if isinstance(q.get("value"), int | float)]


def reduced_order(
    resource: Mapping[str, Any], dose: DailyDose, per_dose_mg: float, keep_text: bool = False
) -> ReducedOrder | None:
    """The order with each dose set to `per_dose_mg` (already rounded to an orderable step),
    written in mg; None when the order has no readable dose or the dose would be zero."""
    if per_dose_mg <= 0 or dose.per_dose_mg is None:
        return None
    order = copy.deepcopy(dict(resource))
    dosages = order.get("dosageInstruction")
    readable = [
        (dosage, quantity)
        for dosage in (dosages if isinstance(dosages, list) else [])
        if isinstance(dosage, dict)
        for quantity in _dose_quantities(dosage)
    ]
    if not readable:
        return None
    value: int | float = int(per_dose_mg) if float(per_dose_mg).is_integer() else per_dose_mg
    shown = tablet_text(per_dose_mg, dose.tablet_mg)
    description = f"{shown} {dose.timing}".strip()
    for dosage, quantity in readable:
        quantity.clear()
        quantity.update({"value": value, "unit": "mg", "system": UCUM, "code": "mg"})
        if not keep_text or not dosage.get("text"):
            dosage["text"] = description
    return ReducedOrder(order, per_dose_mg, description)


def without_unit_codes(resource: Mapping[str, Any], dose: DailyDose) -> dict[str, Any]:
    """A copy of the order at its own dose with no countable unit code such as `{pill}` left
    in it (clinical rules §3 suggestions v4): written in mg when the tablet strength is known,
    else as "tablet" in words (a unit with no code)."""
    if dose.per_dose_mg is not None:
        same = reduced_order(resource, dose, dose.per_dose_mg, keep_text=True)
        if same is not None:
            return same.resource
    order = copy.deepcopy(dict(resource))
    for dosage in order.get("dosageInstruction") or []:
        if not isinstance(dosage, dict):
            continue
        for quantity in _dose_quantities(dosage):
            if "{" in str(quantity.get("code") or "") + str(quantity.get("unit") or ""):
                value = quantity["value"]
                quantity.clear()
                quantity.update({"value": value, "unit": "tablet"})
    return order
