"""Which results come from the same blood draw, found by binary search instead of comparing
every result with every other: a chart of 10,000 counts took ~3 s of pairwise comparisons in
`CountReader.finish_counts`, past the hook call's deadline, where sorting takes milliseconds.

Two results are of one draw when they name the same specimen, or, when either names none, were
taken within SAME_DRAW of each other (clinical rules §1.4). So the results of a look-up's draw
are those in the time window around it (then checked one by one) plus those with its specimen.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from cds_service.record.model import SAME_DRAW


def same_draw(
    a_time: datetime, a_specimen: str | None, b_time: datetime, b_specimen: str | None
) -> bool:
    """Same specimen, or (no specimens to compare) drawn within 1 h (clinical rules §1.4)."""
    if a_specimen and b_specimen:
        return a_specimen == b_specimen
    return abs(a_time - b_time) <= SAME_DRAW


class Drawn(Protocol):
    @property
    def time(self) -> datetime: ...

    @property
    def specimen(self) -> str | None: ...


T = TypeVar("T", bound=Drawn)


class DrawIndex(Generic[T]):
    """Results, looked up by draw."""

    def __init__(self, results: Sequence[T]) -> None:
        self.results = results
        self._by_time = sorted(range(len(results)), key=lambda i: results[i].time)
        self._times = [results[i].time for i in self._by_time]
        self._by_specimen: dict[str, list[int]] = {}
        for i, result in enumerate(results):
            if result.specimen:
                self._by_specimen.setdefault(result.specimen, []).append(i)

    def of_draw(self, time: datetime, specimen: str | None) -> list[T]:
        """The results of the draw of (`time`, `specimen`), in their original order."""
        start = bisect_left(self._times, time - SAME_DRAW)
        end = bisect_right(self._times, time + SAME_DRAW)
        found = set(self._by_time[start:end])
        if specimen:
            found.update(self._by_specimen.get(specimen, ()))
        return [
            self.results[i]
            for i in sorted(found)
            if same_draw(time, specimen, self.results[i].time, self.results[i].specimen)
        ]


class ChosenDraws:
    """The draws already given a result, for picking one result per draw: a result is of a
    chosen draw when it shares a specimen with one, or lies within a tolerance of one."""

    def __init__(self) -> None:
        self._times: list[datetime] = []
        self._specimens: set[str] = set()

    def holds(self, time: datetime, specimen: str | None, tolerance: timedelta) -> bool:
        if specimen and specimen in self._specimens:
            return True
        nearest = bisect_left(self._times, time - tolerance)
        return nearest < len(self._times) and self._times[nearest] <= time + tolerance

    def add(self, time: datetime, specimen: str | None) -> None:
        insort(self._times, time)
        if specimen:
            self._specimens.add(specimen)
