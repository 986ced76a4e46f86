"""Monitoring and data rules: CBC_STALE and DATA_QUALITY."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.days import day, days_between
from cds_service.knowledge import Ingredient
from cds_service.record import (
    COUNT_GROUPS,
    SAME_DRAW,
    Count,
    DrugExposure,
    PatientRecord,
    UnusableResult,
)
from cds_service.record.dosing import DailyDose
from cds_service.record.medications import current_run
from cds_service.rules.assessments import (
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


_FEBRILE_WBC_HOURS = 72


def _febrile_without_recent_wbc(ctx: RuleContext) -> str | None:
    """Clinical rules §2.4 "fever with other cytopenia": a febrile patient on a tier A drug with
    no WBC in the last 72 h. Choices where the spec is silent: a preliminary WBC counts as
    drawn (the CBC is on its way); no reason when FEBRILE_NEUTROPENIA already fired, as it asks
    for the same stat CBC and same-day evaluation (one card per problem)."""
    record = ctx.record
    if not tier_a_current(record) or ctx.has_fired("FEBRILE_NEUTROPENIA"):
        return None
    found = fever(record, ctx.knowledge)
    if found is None:
        return None
    latest = record.latest("wbc", include_preliminary=True)
    if latest is not None and latest.time >= record.now - timedelta(hours=_FEBRILE_WBC_HOURS):
        return None
    last = f"last WBC {day(latest.time)}" if latest else no_wbc_on_file(record)
    return f"Fever: {found.description}; {last}, none in the last {_FEBRILE_WBC_HOURS} h"


def _low_anc_without_new_differential(ctx: RuleContext) -> str | None:
    """Clinical rules §2.4 "ANC unknown" (v3): an older ANC < 1.0 followed by a newer WBC >= 2.0
    without a differential is not critical, but the low ANC must be repeated. Choice where
    the spec is silent: only the ANC of the 30-day current window is looked at (an older low
    count is the "low and not repeated" reason instead)."""
    state = neutrophil_state(ctx.record, ctx.knowledge, include_preliminary=False)
    earlier, wbc = state.earlier_anc, state.wbc
    if earlier is None or wbc is None:
        return None
    if earlier.value >= ctx.threshold("moderate_neutropenia_anc"):
        return None
    if wbc.value < ctx.threshold("severe_leukopenia_wbc"):
        return None  # WBC < 2.0 with ANC unknown is LEUKOPENIA_MONITOR (b) or severe
    drawn = (
        "today's WBC"
        if days_between(wbc.time, ctx.record.now) < 1
        else f"the WBC of {day(wbc.time)}"
    )
    return (
        f"Last ANC {earlier.bound} on {day(earlier.time)} was low; "
        f"{drawn} has no differential: repeat it."
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
    record = ctx.record
    latest_wbc = record.latest("wbc")
    evidence: list[str] = []
    reasons: list[str] = []
    stale: list[tuple[DrugExposure, Interval]] = []
    for exposure in tier_a_current(record):
        window = stale_window_days(ctx, exposure)
        if latest_wbc is None or days_between(latest_wbc.time, record.now) > window:
            last = f"last WBC {day(latest_wbc.time)}" if latest_wbc else no_wbc_on_file(record)
            interval = monitoring_interval(ctx, exposure, window)
            stale.append((exposure, interval))
            reasons.append(f"{interval.drug}: {interval.why}; {last}")
    current_days = ctx.threshold("current_days")
    for analyte in ("wbc", "anc", "alc"):
        latest = record.latest(analyte)
        if (
            latest
            and days_between(latest.time, record.now) > current_days
            and is_low_count(latest, ctx)
        ):
            reasons.append(
                f"last {analyte.upper()} was low ({latest.bound} x10^9/L, "
                f"{day(latest.time)}) and has not been repeated"
            )
    low_anc = _low_anc_without_new_differential(ctx)
    febrile = _febrile_without_recent_wbc(ctx)
    if not reasons and low_anc is None and febrile is None:
        return None
    if febrile:
        evidence.append(febrile)
    if low_anc:
        evidence.append(low_anc)
    evidence += reasons
    if latest_wbc:
        evidence.append(f"Latest WBC {latest_wbc.describe()}")
    low_not_repeated = any("not been repeated" in r for r in reasons)
    is_febrile = febrile is not None or fever(record, ctx.knowledge) is not None
    drugs = [e for e, _ in stale] or tier_a_current(record)
    if is_febrile:
        # v4: the febrile variant names the drug and leads with the fever, nothing else.
        named = f" (on {drugs[0].ingredient.display})" if drugs else ""
        summary = f"{FEBRILE_NOW}{named}."
    elif low_anc:
        summary = low_anc
    elif low_not_repeated:
        summary = "Last count was low and has not been repeated: order CBC with differential."
    elif stale:
        summary = _stale_summary(stale[0][1])
    else:
        summary = "CBC monitoring overdue on a marrow-toxic drug: order CBC with differential."
    priority: Priority = "stat" if is_febrile else "routine"
    schedules = [] if is_febrile else monitoring_schedules(drugs)
    return Finding(
        indicator="warning",
        summary=summary,
        evidence=evidence,
        recommendations=[
            FEBRILE_LEAD if is_febrile else "Order a CBC with differential.",
            *(line for line, _ in schedules),
        ],
        sources=list(dict.fromkeys([source for _, source in schedules] + ["bsr_dmard_2017"])),
        orders=[
            SuggestedOrder(
                "cbc",
                priority,
                "Order CBC with differential" + (" (stat)" if is_febrile else ""),
                recommended=True,
            )
        ],
    )


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
    evidence = [f"Could not use {u.describe()}" for u in unusable]
    evidence += [f"{m.display}: medication status 'unknown'" for m in unknown_status]
    evidence += [
        f"Data not available from the EHR: {_DATA_WORDS.get(key, key)} ({reason})"
        for key, reason in sorted(record.unavailable.items())
    ]
    evidence += [f"Draft order not fully read: {note}" for note in record.draft_notes]
    severe = [u for u in unusable if severe_in_any_unit(u, ctx)]
    no_usable_wbc = any(
        (latest := record.latest("wbc")) is None
        or days_between(latest.time, record.now) > stale_window_days(ctx, exposure)
        for exposure in tier_a_current(record)
    )
    warning = bool(record.unavailable) or bool(severe) or (no_usable_wbc and bool(unusable))
    if record.unavailable:
        summary = missing_summary(ctx)  # §2.6 v4: the data-missing card
    elif severe:
        first = severe[0]
        summary = _fit(
            f"{first.what} {first.received} could not be interpreted and may be severe: "
            "resolve with the lab today.",
            f"{first.what} could not be interpreted and may be severe: resolve with the lab today.",
        )
    elif unusable:
        first = unusable[0]
        reason = first.reason.split(":")[0]
        summary = _fit(
            f"{first.what} {first.received} could not be used ({reason}): check with the lab.",
            f"{first.what} result could not be used: check with the lab.",
        )
    elif record.draft_notes:
        summary = _fit(
            f"A draft order could not be fully read: {record.draft_notes[0]}.",
            "A draft order could not be fully read: see details.",
        )
    else:
        summary = "A marrow-toxic drug has medication status 'unknown': confirm it."
    others = [f for f in ctx.fired if f.rule != "DATA_QUALITY"]
    if record.unavailable:
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
    if severe:
        recommendations.append(
            "Resolve with the lab today: the number would be severe in any count unit."
        )
    if unusable:
        recommendations.append("Ask the lab to correct the unit or repeat the test.")
    if unknown_status:
        recommendations.append("Confirm whether the drug is being taken.")
    if record.unavailable:
        # §2.6 v4: no units standard unless a result with a unit problem is listed too; a CBC
        # only when the counts themselves are missing on a tier A drug.
        sources = [SOURCE, *(["ucum"] if unusable else [])]
        orders = missing_orders(ctx)
    else:
        sources = ["ucum"]
        cbc = SuggestedOrder("cbc", "routine", "Order CBC with differential")
        orders = [cbc] if warning else []
    return Finding(
        indicator="warning" if warning else "info",
        summary=summary,
        evidence=evidence,
        recommendations=recommendations[:5],
        sources=sources,
        orders=orders,
        override_reasons=["already-addressed", "data-incorrect"],
    )
