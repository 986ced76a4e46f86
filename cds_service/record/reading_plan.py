"""Reading only what the rules can reach (speed: a typical chart holds years of CBCs).

The rules declare how far back they read each kind of result (`ReadingNeeds`, declared in
`cds_service.rules.reading`); the plan leaves unparsed the Observations that lie beyond every
window. Results are linked to each other by specimen or by time (same draw: 1 h, flow
cytometry: 1 day), so the cut is made in a quiet gap and never splits a specimen; after
building, `ReadingPlan.holds_for` checks that every count window was covered, and the full
record is built otherwise. Same cards either way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from cds_service.knowledge import Knowledge
from cds_service.record import terminology
from cds_service.record.model import COUNT_GROUPS, PatientRecord, Raw
from cds_service.record.reader import observation_time, specimen_of

_LINK = timedelta(days=2)  # more than any same-draw tolerance


@dataclass(frozen=True)
class LookBack:
    """A window the rules read back over: `times` x the value of the threshold `threshold`,
    which is in `unit`."""

    threshold: str
    unit: Literal["days", "hours"] = "days"
    times: int = 1

    def length(self, knowledge: Knowledge) -> timedelta:
        value = self.times * knowledge.threshold(self.threshold)
        return timedelta(hours=value) if self.unit == "hours" else timedelta(days=value)


@dataclass(frozen=True)
class ReadingNeeds:
    """How far back the rules read the Observations, by kind of result. Windows end now,
    except `counts_before_latest`, which end at each count's latest result. Of the weights,
    the rules read only the newest usable one (and the unusable ones within `unusable`)."""

    counts: tuple[LookBack, ...]  # WBC, ANC, ALC and their lab flags
    counts_before_latest: tuple[LookBack, ...]  # the history compared with the latest
    trend_results: int  # the latest count and the earlier ones a card lists
    temperatures: tuple[LookBack, ...]
    unusable: tuple[LookBack, ...]  # results of any kind that could not be interpreted

    @property
    def windows(self) -> tuple[LookBack, ...]:
        return self.counts + self.counts_before_latest + self.temperatures + self.unusable

    def thresholds(self) -> frozenset[str]:
        """The names of the thresholds the windows are made of."""
        return frozenset(window.threshold for window in self.windows)


def _longest(look_backs: tuple[LookBack, ...], knowledge: Knowledge) -> timedelta:
    return max((look_back.length(knowledge) for look_back in look_backs), default=timedelta(0))


@dataclass(frozen=True)
class ReadingPlan:
    skipped: frozenset[int] = frozenset()  # id() of Observations not parsed
    newest_skipped_count: datetime | None = None
    newest_skipped_weight: datetime | None = None
    count_lookback: timedelta = timedelta(0)
    trend_results: int = 0

    def holds_for(self, record: PatientRecord) -> bool:
        """Whether everything the rules can read lies after what was skipped."""
        if self.newest_skipped_count is not None:
            for analyte in ("wbc", "anc", "alc"):
                series = record.series(analyte)
                if len(series) < self.trend_results:
                    return False
                if series[0].time - self.count_lookback <= self.newest_skipped_count:
                    return False
        if self.newest_skipped_weight is not None:
            weight = record.weight
            if weight is None or weight.time <= self.newest_skipped_weight:
                return False
        return True


def plan_reading(
    resources: Sequence[Raw], knowledge: Knowledge, now: datetime, needs: ReadingNeeds
) -> ReadingPlan:
    k = knowledge
    unusable_horizon = now - _longest(needs.unusable, k)
    count_horizon = now - _longest(needs.counts + needs.unusable, k)
    temperature_horizon = now - _longest(needs.temperatures + needs.unusable, k)
    lookback = _longest(needs.counts_before_latest, k)
    counts: list[tuple[datetime, Raw]] = []
    by_group: dict[str, list[datetime]] = {"wbc": [], "anc": [], "alc": []}
    temperatures: list[tuple[datetime, Raw]] = []
    weights: list[tuple[datetime, Raw]] = []
    for resource in resources:
        if resource.get("resourceType") != "Observation":
            continue
        matched = terminology.analyte_of(resource.get("code"), k)
        time = observation_time(resource) if matched else None
        if matched is None or time is None:
            continue
        analyte = matched[0]
        if analyte in COUNT_GROUPS:
            counts.append((time, resource))
            by_group[COUNT_GROUPS[analyte]].append(time)
        elif analyte == "temperature":
            temperatures.append((time, resource))
        elif analyte == "weight":
            weights.append((time, resource))

    skipped = [id(r) for time, r in temperatures if time < temperature_horizon]
    newest_skipped_weight = None
    if weights:
        weight_cut = min(unusable_horizon, max(time for time, _ in weights))
        old_weights = [(time, r) for time, r in weights if time < weight_cut]
        skipped += [id(r) for _, r in old_weights]
        newest_skipped_weight = max((time for time, _ in old_weights), default=None)
    skipped_counts = _old_counts(counts, by_group, count_horizon, lookback, needs.trend_results)
    skipped += [id(r) for _, r in skipped_counts]
    return ReadingPlan(
        frozenset(skipped),
        max((time for time, _ in skipped_counts), default=None),
        newest_skipped_weight,
        lookback,
        needs.trend_results,
    )


def _old_counts(
    counts: list[tuple[datetime, Raw]],
    by_group: dict[str, list[datetime]],
    horizon: datetime,
    lookback: timedelta,
    trend_results: int,
) -> list[tuple[datetime, Raw]]:
    """The count Observations older than every window, cut in a quiet gap; [] if none."""
    cut = horizon
    for times in by_group.values():
        times.sort(reverse=True)
        if len(times) <= trend_results:
            return []  # too few to be sure older ones are not needed: read everything
        cut = min(cut, times[0] - lookback, times[trend_results])
    ordered = sorted(counts, key=lambda pair: pair[0], reverse=True)
    index = next((i for i, (time, _) in enumerate(ordered) if time < cut), len(ordered))
    while 0 < index < len(ordered) and ordered[index - 1][0] - ordered[index][0] <= _LINK:
        index += 1
    kept, old = ordered[:index], ordered[index:]
    kept_specimens = {specimen_of(r) for _, r in kept} - {None}
    if any(specimen_of(r) in kept_specimens for _, r in old):
        return []
    return old
