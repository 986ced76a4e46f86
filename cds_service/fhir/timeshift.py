"""Moving a recorded scenario in time: every FHIR date and dateTime in a JSON document is
shifted by the same amount, so a fixture written "as of" its anchor can be replayed today
with the same clinical meaning (a CBC 3 days old stays 3 days old)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

# Fixtures are written as of this instant (fixtures/README.md).
FIXTURE_ANCHOR = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
# Dates that describe the person, not the episode, stay as they are.
_KEEP = {"birthDate", "deceasedDateTime"}


def _shift_text(text: str, delta: timedelta) -> str:
    if _DATE.match(text):
        return (datetime.fromisoformat(text) + timedelta(days=delta.days)).date().isoformat()
    if _DATETIME.match(text):
        moved = datetime.fromisoformat(text.replace("Z", "+00:00")) + delta
        shown = moved.isoformat(timespec="seconds")
        return shown.replace("+00:00", "Z") if text.endswith("Z") else shown
    return text


def shift_dates(document: Any, delta: timedelta) -> Any:
    """A copy of `document` with every date and dateTime value moved by `delta`."""
    if isinstance(document, dict):
        return {k: v if k in _KEEP else shift_dates(v, delta) for k, v in document.items()}
    if isinstance(document, list):
        return [shift_dates(v, delta) for v in document]
    if isinstance(document, str):
        return _shift_text(document, delta)
    return document


def replay_now(document: Any, now: datetime | None = None) -> Any:
    """A fixture moved so that its anchor is `now` (default: the current time)."""
    now = now or datetime.now(UTC)
    return shift_dates(document, now - FIXTURE_ANCHOR)
