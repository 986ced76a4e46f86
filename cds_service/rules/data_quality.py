"""DATA_QUALITY: results that could not be used, drugs of unknown status, data the EHR could
not provide, drafts not fully read (clinical rules §3 DATA_QUALITY v3, §2.6 v4). The rule
assesses (`DataProblems`), then words the card."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cds_service.days import days_between
from cds_service.knowledge import ThresholdName
from cds_service.record import COUNT_GROUPS, SAME_DRAW, MedicationRecord, UnusableResult
from cds_service.rules.assessments import tier_a_current
from cds_service.rules.base import MAX_SUMMARY, Finding, RuleContext, SuggestedOrder
from cds_service.rules.data_missing import (
    SOURCE,
    missing_orders,
    missing_recommendations,
    missing_summary,
)
from cds_service.rules.monitoring import stale_window_days

# Severe in any count unit (clinical rules §2.3): the largest factor of the §2.3 table is 1
# (10^9/L), so a number below these limits is severe whatever unit it was meant in.
_SEVERE_LIMITS: dict[str, ThresholdName] = {
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
