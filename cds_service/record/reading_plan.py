"""Reading only what the rules can reach (speed: a typical chart holds years of CBCs).

The rules declare how far back they read each kind of result (`ReadingNeeds`, declared in
`cds_service.rules.reading`); the plan leaves unparsed the Observations that lie beyond every
window, read from the classification the readers use too (`chart`). Results are linked to each
other by specimen or by time (same draw: 1 h, flow cytometry: 1 day), so the cut is made in a
quiet gap and never splits a specimen; after building, `ReadingPlan.holds_for` checks that every
count window was covered, and the full record is built otherwise. Same cards either way.

The same needs decide how far back a FHIR search is read (`ReadingHorizon`, clinical rules
§2.6): pages are read until the results held reach back past the horizon of their key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from cds_service.knowledge import Knowledge, ThresholdName
from cds_service.record import terminology
from cds_service.record.chart import Chart, ChartObservation
from cds_service.record.model import COUNT_GROUPS, PatientRecord, Raw
from cds_service.record.reader import observation_time, specimen_of

_LINK = timedelta(days=2)  # more than any same-draw tolerance


@dataclass(frozen=True)
class LookBack:
    """A window the rules read back over: `times` x the value of the threshold `threshold`,
    which is in `unit`."""

    threshold: ThresholdName
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
    # How far back weights are read from the FHIR server (the newest of any age is needed too:
    # a card flags a weight older than this).
    weights: tuple[LookBack, ...] = ()

    @property
    def windows(self) -> tuple[LookBack, ...]:
        return (
            self.counts
            + self.counts_before_latest
            + self.temperatures
            + self.unusable
            + self.weights
        )

    def thresholds(self) -> frozenset[str]:
        """The names of the thresholds the windows are made of."""
        return frozenset(window.threshold for window in self.windows)


def _longest(look_backs: tuple[LookBack, ...], knowledge: Knowledge) -> timedelta:
    return max((look_back.length(knowledge) for look_back in look_backs), default=timedelta(0))


@dataclass(frozen=True)
class ReadingPlan:
    skipped: frozenset[ChartObservation] = frozenset()  # the Observations not read
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


def plan_reading(chart: Chart, now: datetime, needs: ReadingNeeds) -> ReadingPlan:
    k = chart.knowledge
    unusable_horizon = now - _longest(needs.unusable, k)
    count_horizon = now - _longest(needs.counts + needs.unusable, k)
    temperature_horizon = now - _longest(needs.temperatures + needs.unusable, k)
    lookback = _longest(needs.counts_before_latest, k)
    # The dated results (no (time, result) pairs: a long history holds thousands).
    counts: list[ChartObservation] = []
    by_group: dict[str, list[datetime]] = {"wbc": [], "anc": [], "alc": []}
    temperatures: list[ChartObservation] = []
    weights: list[ChartObservation] = []
    for entry in chart.observations:
        analyte, time = entry.analyte, entry.time
        if analyte is None or time is None:
            continue
        if analyte in COUNT_GROUPS:
            counts.append(entry)
            by_group[COUNT_GROUPS[analyte]].append(time)
        elif analyte == "temperature":
            temperatures.append(entry)
        elif analyte == "weight":
            weights.append(entry)

    skipped = [entry for entry in temperatures if _time(entry) < temperature_horizon]
    newest_skipped_weight = None
    if weights:
        weight_cut = min(unusable_horizon, max(_time(entry) for entry in weights))
        old_weights = [entry for entry in weights if _time(entry) < weight_cut]
        skipped += old_weights
        newest_skipped_weight = max((_time(entry) for entry in old_weights), default=None)
    skipped_counts = _old_counts(counts, by_group, count_horizon, lookback, needs.trend_results)
    skipped += skipped_counts
    return ReadingPlan(
        frozenset(skipped),
        max((_time(entry) for entry in skipped_counts), default=None),
        newest_skipped_weight,
        lookback,
        needs.trend_results,
    )


def _time(entry: ChartObservation) -> datetime:
    """The time of a result the plan dated (the undated ones are always read)."""
    assert entry.time is not None
    return entry.time


def _old_counts(
    counts: list[ChartObservation],
    by_group: dict[str, list[datetime]],
    horizon: datetime,
    lookback: timedelta,
    trend_results: int,
) -> list[ChartObservation]:
    """The count Observations older than every window, cut in a quiet gap; [] if none."""
    cut = horizon
    for times in by_group.values():
        times.sort(reverse=True)
        if len(times) <= trend_results:
            return []  # too few to be sure older ones are not needed: read everything
        cut = min(cut, times[0] - lookback, times[trend_results])
    ordered = sorted(counts, key=_time, reverse=True)
    index = next((i for i, entry in enumerate(ordered) if _time(entry) < cut), len(ordered))
    while 0 < index < len(ordered) and _time(ordered[index - 1]) - _time(ordered[index]) <= _LINK:
        index += 1
    kept, old = ordered[:index], ordered[index:]
    kept_specimens = {specimen_of(entry.resource) for entry in kept} - {None}
    if any(specimen_of(entry.resource) in kept_specimens for entry in old):
        return []
    return old


class ReadingHorizon:
    """How far back each prefetch key's search is read (clinical rules §2.6), for
    `cds_service.fhir.gather`: the counts back past every count window (6 months before now,
    and before the latest count), the temperatures over the fever window (24 h), the weights
    over 6 months. Holding a count older than the horizon also gives the latest count before
    each cyclophosphamide dose within it (results come newest first). Other keys (conditions,
    medications, TPMT/NUDT15 and Duffy results of any age) have no horizon: read to the end.
    The last WBC, ANC and ALC of any age (CBC_STALE, ORDER_NO_RECENT_CBC) and the newest
    weight are asked for by one more search when the horizon holds none."""

    def __init__(self, needs: ReadingNeeds, knowledge: Knowledge, now: datetime) -> None:
        k = self.knowledge = knowledge
        self._since = {
            "counts": now - _longest(needs.counts + needs.unusable, k),
            "temperatures": now - _longest(needs.temperatures, k),
            "weights": now - _longest(needs.weights + needs.unusable, k),
        }
        self._before_latest = _longest(needs.counts_before_latest, k)
        latest: dict[str, list[str]] = {}
        for system, code in k.codes_by_kind.get("count", ()):
            group = COUNT_GROUPS.get(k.analyte_by_code.get((system, code), ""))
            if group:
                latest.setdefault(group, []).append(f"{system}|{code}")
        self._latest_counts = {group: ",".join(codes) for group, codes in latest.items()}
        self._weight_codes = ",".join(f"{s}|{c}" for s, c in k.codes_by_kind.get("weight", ()))

    def result_time(self, resource: Raw) -> datetime | None:
        return observation_time(resource) if resource.get("resourceType") == "Observation" else None

    def start(self, key: str, resources: Sequence[Raw]) -> datetime | None:
        since = self._since.get(key)
        if since is not None and key == "counts":
            times = [t for r in resources if (t := self.result_time(r)) is not None]
            if times:  # the history compared with the latest count reaches back from it
                since = min(since, max(times) - self._before_latest)
        return since

    def missing_latest(self, key: str, resources: Sequence[Raw]) -> list[str]:
        if key == "counts":
            held = {self._group(r) for r in resources}
            return [codes for group, codes in self._latest_counts.items() if group not in held]
        if key == "weights" and self._weight_codes:
            weighed = any(self._analyte(r) == "weight" for r in resources)
            return [] if weighed else [self._weight_codes]
        return []

    def _analyte(self, resource: Raw) -> str | None:
        matched = terminology.analyte_of(resource.get("code"), self.knowledge)
        return matched[0] if matched else None

    def _group(self, resource: Raw) -> Any:
        return COUNT_GROUPS.get(self._analyte(resource) or "")
