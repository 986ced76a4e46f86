"""Structured, PHI-safe logs: one JSON object per line.

Call sites pass only safe fields (service id, hookInstance when it is a UUID, rule ids,
counts, durations, reasons written by us); never bodies, tokens or patient identifiers.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

# C0 and C1 control characters and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if record.exc_info:
            # The exception type only: messages and tracebacks can carry request data.
            entry["error_type"] = record.exc_info[0].__name__ if record.exc_info[0] else "error"
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Werkzeug's request line is replaced by our own PHI-safe "answered" entries.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Alembic announces each of its plugins at INFO on every start: seven lines of noise.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def escape_control(text: str) -> str:
    """`text` with control characters written as escapes, for plain-text log lines: a client's
    `%0A` (decoded by then) must not start a forged line of its own."""
    return _CONTROL.sub(lambda match: json.dumps(match[0])[1:-1], text)
