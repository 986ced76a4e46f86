"""FHIR date and dateTime values as timezone-aware datetimes.

A date without a time is read as midnight UTC of that day; a dateTime without an offset (not
valid FHIR, but sent by some systems) is read as UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any


def as_datetime(value: Any) -> datetime | None:
    """A FHIR date/dateTime/instant (string, date or datetime) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    try:
        if len(text) == 4:  # YYYY
            return datetime(int(text), 1, 1, tzinfo=UTC)
        if len(text) == 7:  # YYYY-MM
            return datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
        parsed = datetime.fromisoformat(text)  # Python 3.11+ reads a "Z" offset too
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
