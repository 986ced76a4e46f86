"""The data-missing card (clinical rules §2.6 v4): when data could not be read from the EHR,
one DATA_QUALITY warning, first in the answer, names the data and what to check ("Blood counts
could not be read from the EHR: check the latest counts before acting on azathioprine"). It
cites the CDS Hooks prefetch rules, not a units standard, and offers a CBC only when the counts
themselves are missing and the patient is on (or being ordered) a tier A drug.

Choices where the spec is silent: the drug named is the patient's current tier A drug, else
the tier A drug of an evaluated draft; the CBC is stat for a febrile patient (fever found in
the data that did arrive), else routine; a history cut short names the date before which
results could not be read ("Blood counts before 2025-07-01 could not be read ..."); records of
another patient that were ignored are said the same way, as data this call could not use."""

from __future__ import annotations

from datetime import datetime

from cds_service.days import day
from cds_service.knowledge import Ingredient
from cds_service.record import PatientRecord
from cds_service.rules.assessments import tier_a_current
from cds_service.rules.base import MAX_SUMMARY, RuleContext, SuggestedOrder

# Kinds of data (record/missing.py), most decisive first, in the clinician's words.
_WORDS = {
    "counts": "blood counts",
    "medications": "medication records",
    "temperatures": "temperatures",
    "conditions": "diagnoses",
    "phenotypes": "TPMT/NUDT15 and Duffy results",
    "weights": "body weights",
    "patient": "patient details",
}
# What to check when that kind is missing ("{drug}": the tier A drug concerned).
_CHECK = {
    "counts": "check the latest counts before acting on {drug}",
    "medications": "check the current medications before acting on these cards",
    "temperatures": "ask about fever and check the temperatures in the chart",
    "conditions": "check the problem list before acting on these cards",
    "phenotypes": "check for TPMT/NUDT15 results before dosing a thiopurine",
    "weights": "check the weight before any dose by weight",
    "patient": "check the patient's details in the chart",
}
SOURCE = "cds_hooks_prefetch"


def tier_a_drugs(record: PatientRecord) -> list[Ingredient]:
    """The patient's current tier A drugs, else those of the evaluated drafts."""
    current = [e.ingredient for e in tier_a_current(record)]
    drafts = [
        m.ingredient
        for d in record.evaluated_drafts()
        for m in d.medications
        if m.ingredient.is_tier_a
    ]
    return list(dict.fromkeys(current or drafts))


def _kinds(record: PatientRecord) -> list[str]:
    known = [kind for kind in _WORDS if kind in record.unreadable]
    return known + sorted(set(record.unreadable) - set(known))


def _what(kind: str, cut: datetime | None) -> str:
    words = _WORDS.get(kind, "some patient data")
    return f"{words} before {day(cut)}" if cut is not None else words


def missing_summary(ctx: RuleContext) -> str:
    """ "Blood counts could not be read from the EHR: check the latest counts before acting on
    azathioprine." Several kinds: the most decisive first, shortened to fit."""
    record = ctx.record
    kinds = _kinds(record)
    if not kinds:  # only records of another patient, ignored
        return "Records of another patient were sent and ignored: check the chart's data."
    first = kinds[0]
    drugs = tier_a_drugs(record)
    action = _CHECK.get(first, "check the chart before acting on these cards").format(
        drug=" and ".join(i.display for i in drugs) or "these cards"
    )
    named = [_what(kind, record.unreadable[kind]) for kind in kinds]
    options = [
        " and ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named),
        f"{named[0]} and other data" if len(named) > 1 else named[0],
    ]
    for what in options:
        for check in (action, "check the chart before acting on these cards"):
            summary = f"{what[0].upper()}{what[1:]} could not be read from the EHR: {check}."
            if len(summary) <= MAX_SUMMARY:
                return summary
    return "Patient data could not be read from the EHR: check the chart before acting."


def missing_recommendations(ctx: RuleContext, other_cards: bool) -> list[str]:
    record = ctx.record
    lines = [
        (
            "The other cards were made without this data"
            if other_cards
            else "No clinical card was made"
        )
        + ": data that could not be read is neither absent nor normal."
    ]
    if "counts" in record.unreadable and tier_a_drugs(record):
        lines.append(
            "Check the latest blood counts in the chart, or order a CBC with differential."
        )
    return lines


def missing_orders(ctx: RuleContext) -> list[SuggestedOrder]:
    """A CBC only when the counts are what is missing and a tier A drug is concerned."""
    record = ctx.record
    if "counts" not in record.unreadable or not tier_a_drugs(record):
        return []
    if ctx.fever is not None:
        return [
            SuggestedOrder("cbc", "stat", "Order CBC with differential (stat)", recommended=True)
        ]
    return [SuggestedOrder("cbc", "routine", "Order CBC with differential", recommended=True)]
