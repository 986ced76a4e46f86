"""Thread-safe event counts the metrics layer reads with `snapshot()`."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

# Names of the counts, so the metrics layer and the code agree on spelling.
CARDS_RECORDED = "cards_recorded"
CARDS_LOST = "cards_lost"  # history rows dropped: queue full or database unavailable
CARDS_SUPPRESSED = "cards_suppressed"  # per rule: "cards_suppressed.<RULE_ID>" as well
SNOOZE_CHECK_FAILURES = "snooze_check_failures"  # database unavailable: cards shown unfiltered


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._listeners: list[Callable[[str, int], None]] = []

    def add_listener(self, listener: Callable[[str, int], None]) -> None:
        """Also tell `listener` of every increment (the Prometheus metrics)."""
        self._listeners.append(listener)

    def increment(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount
        for listener in self._listeners:
            listener(name, amount)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
