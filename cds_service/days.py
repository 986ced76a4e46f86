"""Days as the rules count and show them: neutral helpers over aware datetimes, with nothing of
FHIR in them (reading FHIR dates is fhir/dates.py's)."""

from __future__ import annotations

from datetime import datetime


def day(value: datetime) -> str:
    """Date for card text, e.g. 2026-01-10."""
    return value.date().isoformat()


def days_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds() / 86400.0
