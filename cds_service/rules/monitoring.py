"""Monitoring and data rules: CBC_STALE and DATA_QUALITY."""

from __future__ import annotations

from datetime import timedelta

from cds_service.fhir_dates import day, days_between
from cds_service.record import Count, DrugExposure
from cds_service.rules.assessments import fmt, is_low_wbc, tier_a_current
from cds_service.rules.base import Finding, RuleContext, SuggestedOrder


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


def cbc_stale(ctx: RuleContext) -> Finding | None:
    """A tier A drug without a qualifying WBC in its stale window (14 days after a start or
    dose increase, else 90; per-drug settings), or any in-scope patient whose latest WBC, ANC
    or ALC is older than 30 days and was low: a low count never repeated is still news."""
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
    if not reasons:
        return None
    evidence += reasons
    if latest_wbc:
        evidence.append(f"Latest WBC {latest_wbc.describe()}")
    low_not_repeated = any("not been repeated" in r for r in reasons)
    summary = (
        "Last count was low and has not been repeated: order CBC with differential."
        if low_not_repeated
        else "CBC monitoring overdue on a marrow-toxic drug: order CBC with differential."
    )
    return Finding(
        rule="CBC_STALE",
        indicator="warning",
        summary=summary,
        evidence=evidence,
        recommendations=[
            "Order a CBC with differential.",
            "Azathioprine label: weekly in month 1, twice monthly in months 2-3, then monthly.",
        ],
        sources=["label_azathioprine", "bsr_dmard_2017"],
        orders=[SuggestedOrder("cbc", "routine", "Order CBC with differential", recommended=True)],
    )


def data_quality(ctx: RuleContext) -> Finding | None:
    """Counts that could not be interpreted (unknown unit, % without a same-specimen WBC,
    contradictory values), a tier A drug with status unknown, data the EHR could not
    provide, or (order hooks) a draft order that could not be read. Info; warning when on a
    tier A drug with no interpretable WBC in the stale window, or when data is missing.

    Choice where the spec is silent: only results of the last 90 days are listed (older
    ones cannot change a current decision); each is named with its value and reason.
    """
    record = ctx.record
    since = record.now - timedelta(days=ctx.threshold("data_quality_lookback_days"))
    unusable = [u for u in record.unusable if u.time is None or u.time >= since]
    unknown_status = [
        m for m in record.medications if m.exposure == "unknown" and m.ingredient.is_tier_a
    ]
    if not (unusable or unknown_status or record.unavailable or record.draft_notes):
        return None
    evidence = [f"Could not use {u.describe()} ({u.reference})" for u in unusable]
    evidence += [
        f"{m.display}: medication status 'unknown' ({m.reference})" for m in unknown_status
    ]
    evidence += [
        f"Data not available from the EHR: {key} ({reason})"
        for key, reason in sorted(record.unavailable.items())
    ]
    evidence += [f"Draft order not fully read: {note}" for note in record.draft_notes]
    tier_a = tier_a_current(record)
    no_usable_wbc = bool(tier_a) and (
        (latest := record.latest("wbc")) is None
        or days_between(latest.time, record.now) > ctx.threshold("stale_cbc_days")
    )
    warning = bool(record.unavailable) or (no_usable_wbc and bool(unusable))
    if record.unavailable:
        summary = "Some patient data could not be retrieved: cards may be incomplete."
    elif unusable:
        summary = f"{unusable[0].what} result could not be interpreted: {unusable[0].reason[:60]}."
    elif record.draft_notes:
        summary = f"A draft order could not be fully read: {record.draft_notes[0][:80]}."
    else:
        summary = "A marrow-toxic drug has medication status 'unknown': confirm it."
    return Finding(
        rule="DATA_QUALITY",
        indicator="warning" if warning else "info",
        summary=summary,
        evidence=evidence,
        recommendations=[
            "No clinical card was made from these results: an uninterpretable or missing value "
            "is not a normal value.",
            "Ask the lab to correct the unit or repeat the test; confirm medication status.",
        ],
        sources=["ucum"],
        orders=[SuggestedOrder("cbc", "routine", "Order CBC with differential")] if warning else [],
        override_reasons=["already-addressed", "data-incorrect"],
    )
