"""Card history written off the request path: the hook call only enqueues rows.

A bounded queue keeps memory flat when the database is slow or away; rows that do not fit, or
whose write fails, are counted as lost and logged (count only, no card content).

Each batch also adds to the daily counts the governance console reads (issue 26): the cards
per day, service, rule, mode and knowledge version, and the hook calls per day and service
(a `CallCount` item, one per call), in the same transaction as the rows, so the counts and
the history agree. A card already recorded (the same uuid) is not counted again.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from cds_service.governance.counters import CARDS_LOST, CARDS_RECORDED, Counters
from cds_service.governance.database import add_to_counts, insert_ignoring_duplicates
from cds_service.governance.models import DailyCalls, DailyCards, IssuedCard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallCount:
    """One hook call, for the daily denominators: its day, service and whether its patient
    was in scope. Nothing else about the call or the patient."""

    day: date
    service_id: str
    in_scope: bool


Row = Mapping[str, Any] | CallCount
_STOP = None
_BATCH_SIZE = 200


class CardHistoryWriter:
    def __init__(self, engine: Engine, counters: Counters, max_queued: int) -> None:
        self._engine = engine
        self._counters = counters
        self._max_queued = max_queued
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self._queue: queue.Queue[Row | None] = queue.Queue(maxsize=self._max_queued)
        # A forked worker (e.g. gunicorn --preload) inherits no threads: start its own then.
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="card-history-writer", daemon=True)
        self._thread.start()

    def submit(self, rows: Sequence[Row]) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._start()
        for index, row in enumerate(rows):
            try:
                self._queue.put_nowait(row)
            except queue.Full:
                lost = _cards_in(rows[index:])
                self._counters.increment(CARDS_LOST, lost)
                log.warning("card history queue full: %d card records dropped", lost)
                return

    def flush(self) -> None:
        """Block until every row submitted so far is written or counted as lost."""
        self._queue.join()

    def close(self, timeout: float = 10) -> None:
        """Write what is queued, then stop the thread (at shutdown)."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("card history writer did not drain before shutdown")
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while batch[-1] is not _STOP and len(batch) < _BATCH_SIZE:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [row for row in batch if row is not _STOP]
            self._write(rows)
            for _ in batch:
                self._queue.task_done()
            if batch[-1] is _STOP:
                return

    def _write(self, rows: list[Row]) -> None:
        if not rows:
            return
        try:
            self._insert(rows)
        except Exception as error:  # any database failure fails the batch, never the thread
            if len(rows) == 1 or isinstance(error, OperationalError | InterfaceError):
                # The database is away (or full, or locked): a retry per row would wait for
                # the time-out once per row.
                self._lost(rows, error)
                return
            # A row the database refuses (a value too long, a NUL, a missing field) must not
            # lose the other cards of the batch: write them one by one, losing only the rows
            # that fail again.
            log.warning(
                "card history batch failed (%s): writing its %d rows one by one",
                type(error).__name__,
                len(rows),
            )
            for row in rows:
                self._write([row])
        else:
            self._counters.increment(CARDS_RECORDED, _cards_in(rows))

    def _insert(self, rows: list[Row]) -> None:
        cards = [row for row in rows if not isinstance(row, CallCount)]
        calls = [row for row in rows if isinstance(row, CallCount)]
        with self._engine.begin() as connection:
            new = insert_ignoring_duplicates(connection, IssuedCard, cards, returning="card_uuid")
            # Each card inserted counted once (a batch may hold the same card twice).
            first = {card["card_uuid"]: card for card in reversed(cards)}
            _count_cards(connection, [first[uuid] for uuid in new])
            _count_calls(connection, calls)

    def _lost(self, rows: list[Row], error: Exception) -> None:
        cards = _cards_in(rows)
        self._counters.increment(CARDS_LOST, cards)
        log.error(
            "card history write failed (%s): %d card records lost, and %d call counts",
            type(error).__name__,
            cards,
            len(rows) - cards,
        )


def _cards_in(rows: Sequence[Row]) -> int:
    return sum(not isinstance(row, CallCount) for row in rows)


def _count_cards(connection: Connection, cards: Sequence[Mapping[str, Any]]) -> None:
    counts = Counter(
        (
            card["issued_at"].date(),
            card["service_id"],
            card["rule_id"],
            card.get("mode", "live"),
            card["knowledge_version"],
        )
        for card in cards
    )
    keys = ("day", "service_id", "rule_id", "mode", "knowledge_version")
    rows = [{**dict(zip(keys, key, strict=True)), "cards": n} for key, n in counts.items()]
    add_to_counts(connection, DailyCards, rows, ("cards",))


def _count_calls(connection: Connection, calls: Sequence[CallCount]) -> None:
    totals: Counter[tuple[date, str]] = Counter()
    in_scope: Counter[tuple[date, str]] = Counter()
    for call in calls:
        totals[(call.day, call.service_id)] += 1
        in_scope[(call.day, call.service_id)] += call.in_scope
    rows = [
        {"day": day, "service_id": service, "calls": n, "in_scope_calls": in_scope[(day, service)]}
        for (day, service), n in totals.items()
    ]
    add_to_counts(connection, DailyCalls, rows, ("calls", "in_scope_calls"))
