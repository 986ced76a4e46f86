"""Reading only what the rules can reach (speed: a typical chart holds years of CBCs).

What the rules read of the Observations (cds_service/rules), all of it bounded:
- counts: per analyte (WBC, ANC, ALC) the latest result and up to 4 earlier ones (trend),
  results within `baseline_median_days` (6-month median) and 2 x `stable_days` (stable WBC)
  before the latest, and results within current/refractory windows before now;
- temperatures: the fever window (24 h); weights: the newest usable one;
- unusable results: those within `data_quality_lookback_days`.
A rule that reads further back must widen these windows. Results are linked to each other
by specimen or by time (same draw: 1 h, flow cytometry: 1 day), so the cut is made in a
quiet gap and never splits a specimen; after building, `holds_for` checks that every
window was covered, and the full record is built otherwise. Same cards either way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.knowledge import Knowledge
from cds_service.record import terminology
from cds_service.record.model import COUNT_GROUPS, PatientRecord, Raw
from cds_service.record.reader import observation_time, specimen_of

TREND_RESULTS = 5  # the latest plus the 4 earlier values cards show
_LINK = timedelta(days=2)  # more than any same-draw tolerance


@dataclass(frozen=True)
class ReadingPlan:
    skipped: frozenset[int] = frozenset()  # id() of Observations not parsed
    newest_skipped_count: datetime | None = None
    newest_skipped_weight: datetime | None = None
    count_lookback: timedelta = timedelta(0)

    def holds_for(self, record: PatientRecord) -> bool:
        """Whether everything the rules can read lies after what was skipped."""
        if self.newest_skipped_count is not None:
            for analyte in ("wbc", "anc", "alc"):
                series = record.series(analyte)
                if len(series) < TREND_RESULTS:
                    return False
                if series[0].time - self.count_lookback <= self.newest_skipped_count:
                    return False
        if self.newest_skipped_weight is not None:
            weight = record.weight
            if weight is None or weight.time <= self.newest_skipped_weight:
                return False
        return True


def plan_reading(resources: list[Raw], knowledge: Knowledge, now: datetime) -> ReadingPlan:
    k = knowledge
    horizon = now - max(
        timedelta(days=k.threshold("data_quality_lookback_days")),
        timedelta(days=k.threshold("current_days")),
        timedelta(days=k.threshold("refractory_window_days")),
        timedelta(hours=k.threshold("fever_window_hours")),
    )
    lookback = timedelta(
        days=max(k.threshold("baseline_median_days"), 2 * k.threshold("stable_days"))
    )
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

    skipped = [id(r) for time, r in temperatures if time < horizon]
    newest_skipped_weight = None
    if weights:
        weight_cut = min(horizon, max(time for time, _ in weights))
        old_weights = [(time, r) for time, r in weights if time < weight_cut]
        skipped += [id(r) for _, r in old_weights]
        newest_skipped_weight = max((time for time, _ in old_weights), default=None)
    skipped_counts = _old_counts(counts, by_group, horizon, lookback)
    skipped += [id(r) for _, r in skipped_counts]
    return ReadingPlan(
        frozenset(skipped),
        max((time for time, _ in skipped_counts), default=None),
        newest_skipped_weight,
        lookback,
    )


def _old_counts(
    counts: list[tuple[datetime, Raw]],
    by_group: dict[str, list[datetime]],
    horizon: datetime,
    lookback: timedelta,
) -> list[tuple[datetime, Raw]]:
    """The count Observations older than every window, cut in a quiet gap; [] if none."""
    cut = horizon
    for times in by_group.values():
        times.sort(reverse=True)
        if len(times) <= TREND_RESULTS:
            return []  # too few to be sure older ones are not needed: read everything
        cut = min(cut, times[0] - lookback, times[TREND_RESULTS])
    ordered = sorted(counts, key=lambda pair: pair[0], reverse=True)
    index = next((i for i, (time, _) in enumerate(ordered) if time < cut), len(ordered))
    while 0 < index < len(ordered) and ordered[index - 1][0] - ordered[index][0] <= _LINK:
        index += 1
    kept, old = ordered[:index], ordered[index:]
    kept_specimens = {specimen_of(r) for _, r in kept} - {None}
    if any(specimen_of(r) in kept_specimens for _, r in old):
        return []
    return old
