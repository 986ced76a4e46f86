"""On how many days of any 7 a medication order gives a dose, and by which route (clinical
rules §2.5, §3 METHOTREXATE_DAILY_DOSING v4).

A daily dose (mg/day, in dosing.py) cannot tell "2.5 mg once daily" from "17.5 mg once
weekly"; the classic fatal methotrexate error is exactly that difference, so the schedule is
read on its own: the days with a dose, from `timing.repeat` (`dayOfWeek`, frequency per
period in s, min, h, d, wk, mo, a, limited by `count`, `boundsDuration` or `boundsPeriod`),
else a `timing.code` (GTS abbreviations), else the order's text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.fhir.dates import as_datetime
from cds_service.record.dosing import PERIOD_DAYS, timing_repeat

# HL7 v3 GTSAbbreviation timing codes: days with a dose in 7 (sent as timing.code).
_TIMING_CODES = {
    "QD": 7.0,
    "AM": 7.0,
    "PM": 7.0,
    "BID": 7.0,
    "TID": 7.0,
    "QID": 7.0,
    "Q1H": 7.0,
    "Q2H": 7.0,
    "Q3H": 7.0,
    "Q4H": 7.0,
    "Q6H": 7.0,
    "Q8H": 7.0,
    "Q12H": 7.0,
    "QOD": 3.5,
    "WK": 1.0,
    "MO": 0.25,
}
# Order text that means a dose every day, or every other day (used only without a usable
# structured timing; text that also speaks of a week is not judged: "15 mg weekly, folic
# acid daily" is a weekly order).
_DAILY_TEXT = re.compile(
    r"\b(daily|every day|each day|once a day|twice a day|a day|per day|nightly|"
    r"every (morning|night|evening)|q\.?d|o\.?d|b\.?i\.?d|t\.?i\.?d|q\.?i\.?d|"
    r"every other day|alternate days|on alternate days)\b",
    re.IGNORECASE,
)
_EVERY_OTHER_DAY = re.compile(r"\b(every other day|alternate days)\b", re.IGNORECASE)
_WEEK_TEXT = re.compile(r"\bweek|\bwk\b", re.IGNORECASE)
# Routes that are neither oral, subcutaneous nor intramuscular: intravenous, intrathecal,
# intra-arterial (SNOMED CT route codes) or named so in the route text.
_PARENTERAL_NOT_SC_IM = {"47625008", "72607000", "58100008"}
_PARENTERAL_WORDS = re.compile(r"\b(intravenous|iv|intrathecal|intra-arterial)\b", re.I)
_ORAL_SC_IM = {"26643006": "oral", "34206005": "subcutaneous", "78421000": "intramuscular"}


@dataclass(frozen=True)
class DoseDays:
    """Days with a dose in any 7 days (an upper estimate), and what it was read from."""

    days: float
    read_from: str  # e.g. "timing: once daily", "timing code QD", "order text 'daily'"

    def describe(self) -> str:
        shown = f"{self.days:.1f}".rstrip("0").rstrip(".")
        return f"doses on {shown} of every 7 days ({self.read_from})"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _course_days(repeat: Mapping[str, Any], interval_days: float) -> float | None:
    """The number of calendar days a limited course touches: `count` doses `interval_days`
    apart, a `boundsDuration`, or a `boundsPeriod` with both ends. None when unlimited."""
    limits: list[float] = []  # calendar days
    count = _number(repeat.get("countMax")) or _number(repeat.get("count"))
    if count is not None and count >= 1:
        span = (count - 1) * interval_days
        limits.append(math.floor(span + 1e-9) + 1 if interval_days < 1 else count)
    duration = repeat.get("boundsDuration")
    if isinstance(duration, dict):
        value, unit = _number(duration.get("value")), duration.get("unit") or duration.get("code")
        if value is not None and unit in PERIOD_DAYS:
            limits.append(max(1.0, math.ceil(value * PERIOD_DAYS[str(unit)] - 1e-9)))
    bounds = repeat.get("boundsPeriod")
    if isinstance(bounds, dict):
        start, end = as_datetime(bounds.get("start")), as_datetime(bounds.get("end"))
        if start is not None and end is not None and end >= start:
            limits.append((end.date() - start.date()).days + 1)
    return min(limits) if limits else None


def _from_repeat(repeat: Mapping[str, Any]) -> DoseDays | None:
    weekdays = repeat.get("dayOfWeek")
    if isinstance(weekdays, list) and weekdays:
        named = len({str(d) for d in weekdays})
        return DoseDays(float(named), f"timing: on {named} named day{'s' if named > 1 else ''}")
    unit = repeat.get("periodUnit")
    if not isinstance(unit, str) or unit not in PERIOD_DAYS:
        return None
    frequency = _number(repeat.get("frequencyMax")) or _number(repeat.get("frequency")) or 1.0
    period = _number(repeat.get("period")) or 1.0
    if frequency <= 0 or period <= 0:
        return None
    period_days = period * PERIOD_DAYS[unit]
    shown = f"{frequency:g} per {period:g} {unit}"
    if period_days >= 7 and frequency * 7 / period_days <= 3:
        # Weekly or less often, or a weekly dose split into up to 3 doses: with a period of a
        # week or more the timing does not say how the doses are spread, and the split
        # weekly dose (3 doses 12 h apart) is the usual reading (clinical rules §3).
        per_week = frequency * 7 / period_days
        if per_week > 2:
            return DoseDays(1.0, f"timing: {shown}, read as a weekly dose split into 3")
        return DoseDays(per_week, f"timing: {shown}")
    interval = period_days / frequency
    days = 7.0 if interval < 1 else 7.0 / interval
    course = _course_days(repeat, interval)
    if course is not None:
        days = min(days, course)
    return DoseDays(days, f"timing: {shown}")


def _from_code(timing: Any) -> DoseDays | None:
    code = timing.get("code") if isinstance(timing, dict) else None
    codings = code.get("coding") if isinstance(code, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        value = str(coding.get("code") or "").upper() if isinstance(coding, dict) else ""
        if value in _TIMING_CODES:
            return DoseDays(_TIMING_CODES[value], f"timing code {value}")
    return None


def _from_text(dosage: Mapping[str, Any]) -> DoseDays | None:
    text = " ".join(
        str(dosage.get(key) or "") for key in ("text", "patientInstruction") if dosage.get(key)
    )
    if not text or _WEEK_TEXT.search(text):
        return None
    found = _DAILY_TEXT.search(text)
    if found is None:
        return None
    days = 3.5 if _EVERY_OTHER_DAY.search(found.group(0)) else 7.0
    return DoseDays(days, f"order text '{found.group(0)}'")


def dose_days(dosages: Any) -> DoseDays | None:
    """The most days with a dose in any 7 among the order's dosage lines, or None when no
    schedule can be read. Structured timing wins over a timing code, and both over text."""
    found: list[DoseDays] = []
    for dosage in dosages if isinstance(dosages, list) else [dosages]:
        if not isinstance(dosage, dict):
            continue
        reading = (
            _from_repeat(timing_repeat(dosage))
            or _from_code(dosage.get("timing"))
            or _from_text(dosage)
        )
        if reading is not None:
            found.append(reading)
    return max(found, key=lambda d: d.days) if found else None


def route_of(dosages: Any) -> str | None:
    """ "oral", "subcutaneous", "intramuscular", "not oral, SC or IM" (intravenous,
    intrathecal, intra-arterial), or None when no route is stated."""
    for dosage in dosages if isinstance(dosages, list) else [dosages]:
        route = dosage.get("route") if isinstance(dosage, dict) else None
        if not isinstance(route, dict):
            continue
        coding = route.get("coding")
        codings = coding if isinstance(coding, list) else []
        codes = {str(c.get("code")) for c in codings if isinstance(c, dict)}
        texts = [str(route.get("text") or "")] + [
            str(c.get("display") or "") for c in codings if isinstance(c, dict)
        ]
        if codes & _PARENTERAL_NOT_SC_IM or any(_PARENTERAL_WORDS.search(t) for t in texts):
            return "not oral, SC or IM"
        for code, name in _ORAL_SC_IM.items():
            if code in codes:
                return name
    return None
