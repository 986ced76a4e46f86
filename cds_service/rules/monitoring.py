"""Monitoring and data rules: CBC_STALE and DATA_QUALITY."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.fhir.dates import day, days_between
from cds_service.knowledge import Ingredient
from cds_service.record import (
    COUNT_GROUPS,
    SAME_DRAW,
    Count,
    DrugExposure,
    MedicationRecord,
    PatientRecord,
    UnusableResult,
)
from cds_service.record.dosing import DailyDose
from cds_service.record.medications import current_run
from cds_service.rules.assessments import (
    Fever,
    fever,
    is_low_wbc,
    neutrophil_state,
    tier_a_current,
)
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
from cds_service.rules.data_missing import (
    SOURCE,
    missing_orders,
    missing_recommendations,
    missing_summary,
)
from cds_service.rules.drugs import shown_dose


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
    found = fever(record, ctx.knowledge)
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
    state = neutrophil_state(ctx.record, ctx.knowledge, include_preliminary=False)
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
        febrile=febrile_no_wbc is not None or fever(record, ctx.knowledge) is not None,
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


# Severe in any count unit (clinical rules §2.3): the largest factor of the §2.3 table is 1
# (10^9/L), so a number below these limits is severe whatever unit it was meant in.
_SEVERE_LIMITS = {
    "wbc": "severe_leukopenia_wbc",
    "anc": "severe_neutropenia_anc",
    "neutrophils_segmented": "severe_neutropenia_anc",
    "alc": "profound_lymphopenia_alc",
}
# The cards a count the lab flags critically low produces (clinical rules §2.3).
_LAB_FLAG_CARDS = ("FEBRILE_NEUTROPENIA", "NEUTROPENIA_SEVERE", "LEUKOPENIA_MONITOR")


def severe_in_any_unit(result: UnusableResult, ctx: RuleContext) -> bool:
    """An uninterpretable count whose number would be severe in any count unit (WBC "1.8"
    with no unit): never a quiet note. A lower bound (">1.8") is not."""
    limit = _SEVERE_LIMITS.get(result.analyte)
    return (
        limit is not None
        and result.value is not None
        and result.comparator in ("", "<", "<=")
        and result.value < ctx.threshold(limit)
    )


def _changes_what_is_known(result: UnusableResult, ctx: RuleContext) -> bool:
    """Whether listing this result tells the clinician something (clinical rules §3
    DATA_QUALITY v3). Choices where the spec is silent: a count already superseded by a newer
    interpretable result of the same analyte cannot change the current state, and a count the
    lab flags critically low is already on the warning or critical card it produced."""
    group = COUNT_GROUPS.get(result.analyte)
    if group and result.time is not None:
        newer = ctx.record.latest(group)
        if newer is not None and newer.time > result.time + SAME_DRAW:
            return False
    on_a_card = ctx.has_fired(*_LAB_FLAG_CARDS, indicators=("warning", "critical"))
    return not (result.critical_low and on_a_card)


# The prefetch keys of hooks/*.yaml in the clinician's words.
_DATA_WORDS = {
    "patient": "patient details",
    "conditions": "diagnoses",
    "medicationStatements": "medication list",
    "medicationRequests": "medication orders",
    "medicationAdministrations": "medication administrations",
    "counts": "blood counts",
    "temperatures": "temperatures",
    "weights": "weights",
    "phenotypes": "TPMT/NUDT15 and Duffy results",
    "other-patient": "records of another patient",
}


def _fit(summary: str, shorter: str) -> str:
    """A summary within the limit, never cut mid-word: the shorter wording replaces it."""
    return summary if len(summary) <= MAX_SUMMARY else shorter


def data_quality(ctx: RuleContext) -> Finding | None:
    """Counts that could not be interpreted (unknown unit, % without a same-specimen WBC,
    contradictory values), a tier A drug with status unknown, data the EHR could not
    provide, or (order hooks) a draft order that could not be read. Info; warning when on a
    tier A drug with no interpretable WBC in its stale-CBC window, when data is missing, or
    when an uninterpretable count would be severe in any count unit ("resolve with the lab
    today"). v3: only what changes what the clinician knows; results and drugs are named in
    the clinician's words (never an internal id); "no clinical card was made" only when none
    was.

    Choice where the spec is silent: only results of the last 90 days are listed (older
    ones cannot change a current decision); each is named with its value and reason.
    """
    found = assess_data_problems(ctx)
    if found is None:
        return None
    record = ctx.record
    if record.unavailable:
        # §2.6 v4: no units standard unless a result with a unit problem is listed too; a CBC
        # only when the counts themselves are missing on a tier A drug.
        sources = [SOURCE, *(["ucum"] if found.unusable else [])]
        orders = missing_orders(ctx)
    else:
        sources = ["ucum"]
        cbc = SuggestedOrder("cbc", "routine", "Order CBC with differential")
        orders = [cbc] if found.warning else []
    return Finding(
        indicator="warning" if found.warning else "info",
        summary=_data_quality_summary(ctx, found),
        evidence=_data_quality_evidence(ctx, found),
        recommendations=_data_quality_recommendations(ctx, found)[:5],
        sources=sources,
        orders=orders,
        override_reasons=["already-addressed", "data-incorrect"],
    )


@dataclass(frozen=True)
class DataProblems:
    """What DATA_QUALITY lists: results that could not be used and change what is known,
    tier A drugs of unknown status, data the EHR could not provide, drafts not fully read."""

    unusable: tuple[UnusableResult, ...]
    severe: tuple[UnusableResult, ...]  # of those, severe in any count unit
    unknown_status: tuple[MedicationRecord, ...]
    missing: bool  # data not available from the EHR (§2.6 v4: the data-missing card)
    no_usable_wbc: bool  # on a tier A drug, no interpretable WBC in its stale-CBC window

    @property
    def warning(self) -> bool:
        return self.missing or bool(self.severe) or (self.no_usable_wbc and bool(self.unusable))


def assess_data_problems(ctx: RuleContext) -> DataProblems | None:
    record = ctx.record
    since = record.now - timedelta(days=ctx.threshold("data_quality_lookback_days"))
    unusable = [
        u
        for u in record.unusable
        if (u.time is None or u.time >= since) and _changes_what_is_known(u, ctx)
    ]
    unknown_status = [
        m for m in record.medications if m.exposure == "unknown" and m.ingredient.is_tier_a
    ]
    if not (unusable or unknown_status or record.unavailable or record.draft_notes):
        return None
    no_usable_wbc = any(
        (latest := record.latest("wbc")) is None
        or days_between(latest.time, record.now) > stale_window_days(ctx, exposure)
        for exposure in tier_a_current(record)
    )
    return DataProblems(
        unusable=tuple(unusable),
        severe=tuple(u for u in unusable if severe_in_any_unit(u, ctx)),
        unknown_status=tuple(unknown_status),
        missing=bool(record.unavailable),
        no_usable_wbc=no_usable_wbc,
    )


def _data_quality_evidence(ctx: RuleContext, found: DataProblems) -> list[str]:
    record = ctx.record
    evidence = [f"Could not use {u.describe()}" for u in found.unusable]
    evidence += [f"{m.display}: medication status 'unknown'" for m in found.unknown_status]
    evidence += [
        f"Data not available from the EHR: {_DATA_WORDS.get(key, key)} ({reason})"
        for key, reason in sorted(record.unavailable.items())
    ]
    evidence += [f"Draft order not fully read: {note}" for note in record.draft_notes]
    return evidence


def _data_quality_summary(ctx: RuleContext, found: DataProblems) -> str:
    record = ctx.record
    if found.missing:
        return missing_summary(ctx)  # §2.6 v4: the data-missing card
    if found.severe:
        first = found.severe[0]
        return _fit(
            f"{first.what} {first.received} could not be interpreted and may be severe: "
            "resolve with the lab today.",
            f"{first.what} could not be interpreted and may be severe: resolve with the lab today.",
        )
    if found.unusable:
        first = found.unusable[0]
        reason = first.reason.split(":")[0]
        return _fit(
            f"{first.what} {first.received} could not be used ({reason}): check with the lab.",
            f"{first.what} result could not be used: check with the lab.",
        )
    if record.draft_notes:
        return _fit(
            f"A draft order could not be fully read: {record.draft_notes[0]}.",
            "A draft order could not be fully read: see details.",
        )
    return "A marrow-toxic drug has medication status 'unknown': confirm it."


def _data_quality_recommendations(ctx: RuleContext, found: DataProblems) -> list[str]:
    others = [f for f in ctx.fired if f.rule != "DATA_QUALITY"]
    if found.missing:
        recommendations = missing_recommendations(ctx, bool(others))
    else:
        recommendations = [
            (
                "The other cards did not use these results"
                if others
                else "No clinical card was made from these results"
            )
            + ": an uninterpretable or missing value is not a normal value."
        ]
    if found.severe:
        recommendations.append(
            "Resolve with the lab today: the number would be severe in any count unit."
        )
    if found.unusable:
        recommendations.append("Ask the lab to correct the unit or repeat the test.")
    if found.unknown_status:
        recommendations.append("Confirm whether the drug is being taken.")
    return recommendations
