"""Monitoring and data rules: CBC_STALE and DATA_QUALITY."""

from __future__ import annotations

from datetime import timedelta

from cds_service.fhir.dates import day, days_between
from cds_service.record import COUNT_GROUPS, SAME_DRAW, Count, DrugExposure, UnusableResult
from cds_service.rules.assessments import (
    fever,
    fmt,
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
)


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
    last = f"last WBC {day(latest.time)}" if latest else "no WBC on file"
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
    leads with the fever words (clinical rules §2.4 "fever with other cytopenia")."""
    record = ctx.record
    latest_wbc = record.latest("wbc")
    evidence: list[str] = []
    reasons: list[str] = []
    for exposure in tier_a_current(record):
        window = stale_window_days(ctx, exposure)
        if latest_wbc is None or days_between(latest_wbc.time, record.now) > window:
            last = f"last WBC {day(latest_wbc.time)}" if latest_wbc else "no WBC on file"
            reasons.append(f"{exposure.describe()}: {last}; monitoring interval {window:g} days")
    current_days = ctx.threshold("current_days")
    for analyte in ("wbc", "anc", "alc"):
        latest = record.latest(analyte)
        if (
            latest
            and days_between(latest.time, record.now) > current_days
            and is_low_count(latest, ctx)
        ):
            reasons.append(
                f"last {analyte.upper()} was low ({fmt(latest.value)} x10^9/L, "
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
    if is_febrile:
        summary = FEBRILE_LEAD
    elif low_anc:
        summary = low_anc
    elif low_not_repeated:
        summary = "Last count was low and has not been repeated: order CBC with differential."
    else:
        summary = "CBC monitoring overdue on a marrow-toxic drug: order CBC with differential."
    priority: Priority = "stat" if is_febrile else "routine"
    schedules = _monitoring_schedules(ctx)
    return Finding(
        rule="CBC_STALE",
        indicator="warning",
        summary=summary,
        evidence=evidence,
        recommendations=[
            FEBRILE_LEAD if is_febrile else "Order a CBC with differential.",
            *(line for line, _ in schedules),
        ],
        sources=[source for _, source in schedules] or ["bsr_dmard_2017"],
        orders=[
            SuggestedOrder(
                "cbc",
                priority,
                "Order CBC with differential" + (" (stat)" if is_febrile else ""),
                recommended=True,
            )
        ],
    )


_THIOPURINE_SCHEDULE = (
    "Azathioprine label: weekly in month 1, twice monthly in months 2-3, then monthly.",
    "label_azathioprine",
)
# Verified in NHS shared-care summaries of the guideline (grade C, docs/clinical-rules.md).
_DMARD_SCHEDULE = (
    "BSR/BHPR 2017: every 2 weeks until the dose is stable for 6 weeks, monthly for 3 months, "
    "then every 3 months.",
    "bsr_dmard_2017",
)


def _monitoring_schedules(ctx: RuleContext) -> list[tuple[str, str]]:
    """The CBC schedule that fits the patient's own drugs (v3 wording: text fits the patient):
    the azathioprine label for a thiopurine, the BSR/BHPR DMARD schedule for methotrexate,
    mycophenolate or leflunomide; none for cyclophosphamide pulses (counted by pulse and nadir)
    or when the card is about a low count alone."""
    drugs = {e.ingredient.id for e in tier_a_current(ctx.record)}
    schedules = []
    if drugs & {"azathioprine", "mercaptopurine"}:
        schedules.append(_THIOPURINE_SCHEDULE)
    if drugs - {"azathioprine", "mercaptopurine", "cyclophosphamide"}:
        schedules.append(_DMARD_SCHEDULE)
    return schedules


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
        summary = "Some patient data could not be retrieved: cards may be incomplete."
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
    return Finding(
        rule="DATA_QUALITY",
        indicator="warning" if warning else "info",
        summary=summary,
        evidence=evidence,
        recommendations=recommendations,
        sources=["ucum"],
        orders=[SuggestedOrder("cbc", "routine", "Order CBC with differential")] if warning else [],
        override_reasons=["already-addressed", "data-incorrect"],
    )
