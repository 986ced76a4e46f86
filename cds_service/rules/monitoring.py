"""CBC_STALE: a CBC overdue on a tier A drug, a low count never repeated, a low ANC without a
newer differential, a febrile patient without a recent WBC; and the drug monitoring intervals
and label schedules the order cards quote too. DATA_QUALITY is in rules/data_quality.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.days import day, days_between
from cds_service.knowledge import Ingredient
from cds_service.record import Count, DrugExposure, PatientRecord
from cds_service.record.dosing import DailyDose
from cds_service.record.medications import current_run
from cds_service.rules.assessments import is_low_wbc, tier_a_current
from cds_service.rules.base import (
    FEBRILE_NOW,
    MAX_SUMMARY,
    Finding,
    Priority,
    RuleContext,
    SuggestedOrder,
    shown_limit,
    shown_period,
    upper_first,
)
from cds_service.rules.drugs import shown_dose
from cds_service.rules.judgements import Fever


def stale_window_days(ctx: RuleContext, exposure: DrugExposure) -> float:
    """Days a WBC stays fresh on this drug: per-drug setting, else 14 after a start or dose
    increase in the last 90 days, else 90 (azathioprine label; BSR/BHPR 2017)."""
    per_drug = ctx.knowledge.stale_cbc_days_by_drug.get(exposure.ingredient.id, {})
    if exposure.started_recently or exposure.dose_increased_recently:
        return float(per_drug.get("new", ctx.threshold("stale_cbc_new_drug_days")))
    return float(per_drug.get("established", ctx.threshold("stale_cbc_days")))


def is_low_count(count: Count, ctx: RuleContext) -> bool:
    """Low for monitoring: WBC < 4.0 (or the LLN), ANC < 1.5, ALC < 0.5."""
    if count.analyte == "wbc":
        return is_low_wbc(count, ctx.knowledge)
    if count.analyte == "anc":
        return count.value < ctx.threshold("mild_neutropenia_anc")
    return count.value < ctx.threshold("profound_lymphopenia_alc")


FEBRILE_LEAD = f"{FEBRILE_NOW}."


def no_wbc_on_file(record: PatientRecord) -> str:
    """ "no WBC on file", or "no WBC since {date}" when older counts were not read (§2.6 v4:
    what was not read is never said to be absent)."""
    since = record.read_since.get("counts")
    return f"no WBC since {day(since)}" if since is not None else "no WBC on file"


@dataclass(frozen=True)
class FebrileWithoutWbc:
    """Clinical rules §2.4 "fever with other cytopenia": febrile on a tier A drug with no WBC
    in the last 72 h."""

    fever: Fever
    latest_wbc: Count | None  # the latest WBC, preliminary included, older than the window


def _febrile_without_recent_wbc(ctx: RuleContext) -> FebrileWithoutWbc | None:
    """Choices where the spec is silent: a preliminary WBC counts as drawn (the CBC is on its
    way); none when FEBRILE_NEUTROPENIA already fired, as it asks for the same stat CBC and
    same-day evaluation (one card per problem)."""
    record = ctx.record
    if not tier_a_current(record) or ctx.has_fired("FEBRILE_NEUTROPENIA"):
        return None
    found = ctx.fever
    if found is None:
        return None
    latest = record.latest("wbc", include_preliminary=True)
    hours = ctx.threshold("febrile_wbc_hours")
    if latest is not None and latest.time >= record.now - timedelta(hours=hours):
        return None
    return FebrileWithoutWbc(found, latest)


def _febrile_line(ctx: RuleContext, found: FebrileWithoutWbc) -> str:
    latest = found.latest_wbc
    last = f"last WBC {day(latest.time)}" if latest else no_wbc_on_file(ctx.record)
    hours = shown_limit(ctx.threshold("febrile_wbc_hours"))
    return f"Fever: {found.fever.description}; {last}, none in the last {hours} h"


@dataclass(frozen=True)
class LowAncNotRepeated:
    """Clinical rules §2.4 "ANC unknown" (v3): an older ANC < 1.0 followed by a newer WBC >= 2.0
    without a differential is not critical, but the low ANC must be repeated."""

    anc: Count
    wbc: Count


def _low_anc_without_new_differential(ctx: RuleContext) -> LowAncNotRepeated | None:
    """Choice where the spec is silent: only the ANC of the 30-day current window is looked at
    (an older low count is the "low and not repeated" reason instead)."""
    state = ctx.neutrophils
    earlier, wbc = state.earlier_anc, state.wbc
    if earlier is None or wbc is None:
        return None
    if earlier.value >= ctx.threshold("moderate_neutropenia_anc"):
        return None
    if wbc.value < ctx.threshold("severe_leukopenia_wbc"):
        return None  # WBC < 2.0 with ANC unknown is LEUKOPENIA_MONITOR (b) or severe
    return LowAncNotRepeated(earlier, wbc)


def _low_anc_line(ctx: RuleContext, found: LowAncNotRepeated) -> str:
    wbc, earlier = found.wbc, found.anc
    drawn = (
        "today's WBC"
        if days_between(wbc.time, ctx.record.now) < 1
        else f"the WBC of {day(wbc.time)}"
    )
    return (
        f"Last ANC {earlier.bound} on {day(earlier.time)} was low; "
        f"{drawn} has no differential: repeat it."
    )


@dataclass(frozen=True)
class StaleCounts:
    """What CBC_STALE found: the drugs whose CBC is overdue, low counts never repeated, a low
    ANC without a newer differential, a febrile patient without a recent WBC."""

    latest_wbc: Count | None
    overdue: tuple[tuple[DrugExposure, float], ...]  # each drug with its window in days
    unrepeated: tuple[Count, ...]  # latest WBC/ANC/ALC, low and older than 30 days
    low_anc: LowAncNotRepeated | None
    febrile_no_wbc: FebrileWithoutWbc | None
    febrile: bool  # febrile now, with or without a recent WBC: the card leads with it


def assess_stale_counts(ctx: RuleContext) -> StaleCounts | None:
    record = ctx.record
    latest_wbc = record.latest("wbc")
    overdue = []
    for exposure in tier_a_current(record):
        window = stale_window_days(ctx, exposure)
        if latest_wbc is None or days_between(latest_wbc.time, record.now) > window:
            overdue.append((exposure, window))
    current_days = ctx.threshold("current_days")
    unrepeated = [
        latest
        for analyte in ("wbc", "anc", "alc")
        if (latest := record.latest(analyte))
        and days_between(latest.time, record.now) > current_days
        and is_low_count(latest, ctx)
    ]
    low_anc = _low_anc_without_new_differential(ctx)
    febrile_no_wbc = _febrile_without_recent_wbc(ctx)
    if not (overdue or unrepeated or low_anc or febrile_no_wbc):
        return None
    return StaleCounts(
        latest_wbc=latest_wbc,
        overdue=tuple(overdue),
        unrepeated=tuple(unrepeated),
        low_anc=low_anc,
        febrile_no_wbc=febrile_no_wbc,
        febrile=febrile_no_wbc is not None or ctx.fever is not None,
    )


def cbc_stale(ctx: RuleContext) -> Finding | None:
    """A tier A drug without a qualifying WBC in its stale window (14 days after a start or
    dose increase, else 90; per-drug settings), or any in-scope patient whose latest WBC, ANC
    or ALC is older than 30 days and was low: a low count never repeated is still news.
    v3: a low ANC followed by a newer WBC without a differential (repeat it), and a febrile
    patient on a tier A drug with no WBC in 72 h. Whenever the patient is febrile the card
    leads with the fever words (clinical rules §2.4 "fever with other cytopenia").
    v4: the card names each overdue drug with its dose as prescribed and why its interval
    applies ("dose increased from 15 mg once weekly to 20 mg once weekly on {date}, so a CBC
    every 14 days until stable"), and quotes that drug's own label schedule; the febrile
    variant names the drug and leads with the fever, nothing else (no schedule lines).

    Choices where the spec is silent: the schedules quoted are those of the overdue drugs, or
    of every current tier A drug when the card is about a low count alone; the 14-day and
    90-day intervals stay the service's settings (BSR/BHPR 2017, cited), the label schedule is
    shown beside them."""
    found = assess_stale_counts(ctx)
    if found is None:
        return None
    intervals = [monitoring_interval(ctx, e, window) for e, window in found.overdue]
    drugs = [e for e, _ in found.overdue] or tier_a_current(ctx.record)
    schedules = [] if found.febrile else monitoring_schedules(drugs)
    priority: Priority = "stat" if found.febrile else "routine"
    return Finding(
        indicator="warning",
        summary=_cbc_stale_summary(ctx, found, intervals, drugs),
        evidence=_cbc_stale_evidence(ctx, found, intervals),
        recommendations=[
            FEBRILE_LEAD if found.febrile else "Order a CBC with differential.",
            *(line for line, _ in schedules),
        ],
        sources=list(dict.fromkeys([source for _, source in schedules] + ["bsr_dmard_2017"])),
        orders=[
            SuggestedOrder(
                "cbc",
                priority,
                "Order CBC with differential" + (" (stat)" if found.febrile else ""),
                recommended=True,
            )
        ],
    )


def _cbc_stale_evidence(
    ctx: RuleContext, found: StaleCounts, intervals: list[Interval]
) -> list[str]:
    record, latest_wbc = ctx.record, found.latest_wbc
    evidence = [_febrile_line(ctx, found.febrile_no_wbc)] if found.febrile_no_wbc else []
    evidence += [_low_anc_line(ctx, found.low_anc)] if found.low_anc else []
    last = f"last WBC {day(latest_wbc.time)}" if latest_wbc else no_wbc_on_file(record)
    evidence += [f"{interval.drug}: {interval.why}; {last}" for interval in intervals]
    evidence += [
        f"last {count.analyte.upper()} was low ({count.bound} x10^9/L, "
        f"{day(count.time)}) and has not been repeated"
        for count in found.unrepeated
    ]
    if latest_wbc:
        evidence.append(f"Latest WBC {latest_wbc.describe()}")
    return evidence


def _cbc_stale_summary(
    ctx: RuleContext, found: StaleCounts, intervals: list[Interval], drugs: list[DrugExposure]
) -> str:
    if found.febrile:
        # v4: the febrile variant names the drug and leads with the fever, nothing else.
        named = f" (on {drugs[0].ingredient.display})" if drugs else ""
        return f"{FEBRILE_NOW}{named}."
    if found.low_anc:
        return _low_anc_line(ctx, found.low_anc)
    if found.unrepeated:
        return "Last count was low and has not been repeated: order CBC with differential."
    if intervals:
        return _stale_summary(intervals[0])
    return "CBC monitoring overdue on a marrow-toxic drug: order CBC with differential."


@dataclass(frozen=True)
class Interval:
    """Why a drug's CBC interval applies (clinical rules §3 CBC_STALE v4)."""

    drug: str  # the drug with its dose as prescribed: "Methotrexate 20 mg once weekly"
    name: str  # "methotrexate"
    why: str  # "dose increased from ... on 2025-12-20, so a CBC every 14 days until stable"
    short: str  # for the summary: "every 14 days since the dose increase on 2025-12-20"


def _last_increase(
    ctx: RuleContext, exposure: DrugExposure
) -> tuple[datetime, DailyDose, DailyDose] | None:
    """The newest dose increase of the current run within the new-drug window: (when, the dose
    before, the dose after), read as `medications._dose_increased` reads it (§2.1)."""
    record = ctx.record
    run = current_run(
        list(exposure.records), record.now, timedelta(days=ctx.threshold("exposure_run_gap_days"))
    )
    since = record.now - timedelta(days=ctx.threshold("new_drug_days"))
    dosed = [(m.start, m.dose) for m in run if m.start is not None and m.dose.mg_per_day]
    found = None
    for (_, before), (start, after) in zip(dosed, dosed[1:], strict=False):
        assert before.mg_per_day is not None and after.mg_per_day is not None
        if start >= since and after.mg_per_day > before.mg_per_day * 1.001:
            found = (start, before, after)
    return found


def monitoring_interval(ctx: RuleContext, exposure: DrugExposure, window: float) -> Interval:
    """The drug, its dose as prescribed, and why its interval is `window` days: a dose
    increase ("dose increased from 15 mg once weekly to 20 mg once weekly on {date}"), a
    start, or an established dose (clinical rules §3 CBC_STALE v4).

    Choice where the spec is silent: an increase is said only when the previous dose is
    known (a record whose dose cannot be read is neither the increase nor its baseline)."""
    name = exposure.ingredient.display
    drug = upper_first(shown_dose(name, exposure.latest_dose))
    every = f"a CBC every {window:g} days"
    increase = _last_increase(ctx, exposure) if exposure.dose_increased_recently else None
    if increase is not None:
        when, before, after = increase
        return Interval(
            drug,
            name,
            f"dose increased from {before.description} to {after.description} on "
            f"{day(when)}, so {every} until stable",
            f"every {window:g} days since the dose increase on {day(when)}",
        )
    if exposure.started_recently and exposure.start is not None:
        return Interval(
            drug,
            name,
            f"started on {day(exposure.start)}, so {every} in the first "
            f"{shown_period(ctx.threshold('new_drug_days'))}",
            f"every {window:g} days after the start on {day(exposure.start)}",
        )
    return Interval(
        drug,
        name,
        f"an established dose, and no usable WBC in the last {window:g} days",
        f"no usable WBC in {window:g} days",
    )


def _stale_summary(interval: Interval) -> str:
    summary = f"CBC overdue on {interval.name} ({interval.short}): order CBC with differential."
    if len(summary) <= MAX_SUMMARY:
        return summary
    return f"CBC overdue on {interval.name}: order CBC with differential."


def monitoring_schedules(drugs: list[DrugExposure] | list[Ingredient]) -> list[tuple[str, str]]:
    """(schedule, source) of each drug's own label (clinical rules §3 CBC_STALE and
    ORDER_NO_RECENT_CBC v4): a card never quotes another drug's schedule (a leflunomide card
    quoting the azathioprine label was the v3 error). Each schedule once, cited to the drug's
    label."""
    ingredients = [d.ingredient if isinstance(d, DrugExposure) else d for d in drugs]
    found: dict[str, str] = {}
    for ingredient in ingredients:
        if ingredient.cbc_schedule and ingredient.label:
            found.setdefault(ingredient.cbc_schedule, ingredient.label)
    return list(found.items())
