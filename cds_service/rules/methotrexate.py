"""METHOTREXATE_DAILY_DOSING (clinical rules §3, v4): oral, subcutaneous or intramuscular
methotrexate given on more than two days in any 7 days.

For rheumatic disease, SLE and psoriasis methotrexate is taken once a week; mistaken daily use
has killed patients (Xatmep label: "Mistaken daily use has resulted in fatal toxicity"; the
methotrexate tablets label's boxed warning "Risk of Medication Errors"; ISMP's call to action
on accidental daily dosing). Patients come into scope by their drugs, so oncology, obstetric
and transplant patients appear too: the card offers protocol override reasons rather than
assuming the indication (§4).
"""

from __future__ import annotations

import copy
from typing import Any

from cds_service.days import day
from cds_service.record import DrugExposure, MedicationRecord, PatientRecord
from cds_service.record.dosing import timing_repeat
from cds_service.record.schedule import DoseDays, dose_days, route_of
from cds_service.rules.assessments import (
    count_evidence,
    is_low_wbc,
)
from cds_service.rules.base import (
    MAX_SUMMARY,
    DraftOrderChange,
    Finding,
    RuleContext,
    SuggestedOrder,
    upper_first,
)
from cds_service.rules.drafts import DraftDrug, cancel_draft, evaluated_drugs

RULE = "METHOTREXATE_DAILY_DOSING"
# More than two days with a dose in any 7 days (clinical rules §3): every 3.5 days or less.
MAX_DAYS_PER_WEEK = 2.0
SOURCES = ["label_xatmep", "label_methotrexate_tablets", "ismp_methotrexate_daily"]
OVERRIDE_REASONS = [
    "oncology-protocol",
    "obstetric-protocol",
    "specialist-protocol",
    "weekly-dose-split",
]
WEEKLY_RULE = (
    "For rheumatic disease, SLE and psoriasis methotrexate is taken once a week, on the same "
    "day each week; mistaken daily use has caused fatal toxicity (label)."
)
PROTOCOL = (
    "If more frequent dosing is an intended protocol (oncology, obstetric), record the "
    "indication and the protocol with the order."
)


def _dosages(medication: MedicationRecord) -> Any:
    raw = medication.raw
    dosage = raw.get("dosageInstruction") or raw.get("dosage")
    return [dosage] if isinstance(dosage, dict) else dosage


def too_frequent(medication: MedicationRecord) -> DoseDays | None:
    """The schedule when it gives methotrexate on more than two days in any 7 by a route the
    rule covers (oral, subcutaneous, intramuscular, or no route stated), else None.

    Choices where the spec is silent: an order with no route is judged (most methotrexate
    is oral, and the override reasons cover a protocol); intravenous, intrathecal and
    intra-arterial orders are oncology dosing and are not judged; an order whose schedule
    cannot be read at all is not judged here (its dose is shown elsewhere as "no usable
    frequency")."""
    if medication.ingredient.id != "methotrexate":
        return None
    dosages = _dosages(medication)
    if route_of(dosages) == "not oral, SC or IM":
        return None
    days = dose_days(dosages)
    return days if days is not None and days.days > MAX_DAYS_PER_WEEK else None


def _prescribed(medication: MedicationRecord, days: DoseDays) -> str:
    """ "methotrexate 10 mg once daily", or the order's own words when the timing is text."""
    dose = medication.dose
    if dose.mg_per_day is not None or dose.strength_unknown:
        return f"methotrexate {dose.description}"
    return f"methotrexate ({days.read_from})"


def weekly_order(resource: Any) -> tuple[dict[str, Any], str] | None:
    """The draft with each dosage line changed to the same dose once weekly, and that dose in
    words, or None when no dose quantity can be read (then only cancelling is offered).

    Choice where the spec is silent: "the same dose" is the dose of one administration (the
    doseQuantity), not the daily total: for "2.5 mg twice daily" the update is 2.5 mg once
    weekly, the lower and safer reading; the prescriber sets the intended weekly dose."""
    order = copy.deepcopy(dict(resource))
    dosages = order.get("dosageInstruction")
    changed = ""
    for dosage in dosages if isinstance(dosages, list) else []:
        if not isinstance(dosage, dict):
            continue
        quantity = _quantity(dosage)
        if quantity is None:
            continue
        dose = _shown_quantity(quantity)
        bounds = timing_repeat(dosage).get("boundsPeriod")  # the course's dates stay
        kept = {"boundsPeriod": bounds} if bounds else {}
        dosage["timing"] = {"repeat": {**kept, "frequency": 1, "period": 1, "periodUnit": "wk"}}
        dosage["text"] = f"{dose} once weekly, on the same day each week"
        changed = changed or dose
    return (order, changed) if changed else None


def _shown_quantity(quantity: dict[str, Any]) -> str:
    """ "10 mg", or "4 tablets" for a countable unit: a code such as `{pill}` never reaches
    text (clinical rules §3 suggestions, v4)."""
    value = float(quantity["value"])
    unit = str(quantity.get("unit") or quantity.get("code") or "mg")
    if unit.startswith("{") or unit.lower() in ("tab", "tabs", "tbl", "pill", "pills"):
        unit = "tablet" if value == 1 else "tablets"
    return f"{value:g} {unit}"


def _quantity(dosage: dict[str, Any]) -> dict[str, Any] | None:
    entries = dosage.get("doseAndRate")
    entries = [entries] if isinstance(entries, dict) else entries
    for entry in entries if isinstance(entries, list) else []:
        quantity = entry.get("doseQuantity") if isinstance(entry, dict) else None
        if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
            return quantity
    quantity = dosage.get("doseQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        return quantity
    return None


def _draft_changes(drug: DraftDrug) -> list[DraftOrderChange]:
    if drug.draft.resource_id is None:
        return []
    weekly = weekly_order(drug.draft.raw)
    changes = []
    if weekly is not None:
        resource, dose = weekly
        changes.append(
            DraftOrderChange(
                "update",
                drug.draft.resource_id,
                f"Change the order to methotrexate {dose} once weekly",
                resource=resource,
                recommended=True,
            )
        )
    changes.append(cancel_draft(drug, None, recommended=weekly is None))
    return changes


def _fit(summary: str, shorter: str) -> str:
    return summary if len(summary) <= MAX_SUMMARY else shorter


def _draft_finding(ctx: RuleContext, drug: DraftDrug, days: DoseDays) -> Finding:
    prescribed = _prescribed(drug.medication, days)
    state = ctx.critical_neutrophils
    return Finding(
        indicator="critical",
        summary=_fit(
            f"{upper_first(prescribed)}: update to once weekly; mistaken daily use has caused "
            "fatal toxicity (label).",
            "Methotrexate ordered on more than 2 days a week: update to once weekly (label).",
        ),
        evidence=[
            f"{drug.describe()}.",
            f"Schedule read: {days.describe()}; the limit is 2 days in any 7.",
            *_route_line(drug.medication),
            *count_evidence(ctx.record, ctx.knowledge, state),
        ],
        recommendations=[
            WEEKLY_RULE,
            "Change the order to the same dose once weekly, naming the day, or cancel it.",
            PROTOCOL,
            "Tell the patient to take it once a week only and never to take an extra dose.",
        ],
        sources=list(SOURCES),
        draft_changes=_draft_changes(drug),
        override_reasons=list(OVERRIDE_REASONS),
        decisive=prescribed,
        about_counts=False,
    )


def _route_line(medication: MedicationRecord) -> list[str]:
    route = route_of(_dosages(medication))
    return [f"Route: {route}."] if route else ["Route: not stated (judged as oral)."]


def _cytopenia(ctx: RuleContext) -> str | None:
    """A current cytopenia that daily methotrexate could cause: WBC < 4.0 (or the lab's
    lower limit), ANC < 1.5 (CTCAE grade 2), or a count the lab flags critically low.
    Choice where the spec is silent: the critical-rule counts are used (preliminary results
    included), and a lymphopenia alone does not make the card critical."""
    k = ctx.knowledge
    state = ctx.critical_neutrophils
    if state.anc is not None and state.anc.value < k.threshold("mild_neutropenia_anc"):
        return f"ANC {state.anc.bound}"
    if state.wbc is not None and is_low_wbc(state.wbc, k):
        return f"WBC {state.wbc.bound}"
    flag = ctx.record.critical_low_flag(
        "anc", bool(k.settings["preliminary_critical_results"]), k.threshold("current_days")
    )
    return f"the lab flags the ANC critically low ({flag.received})" if flag else None


def _current_finding(
    ctx: RuleContext, exposure: DrugExposure, medication: MedicationRecord, days: DoseDays
) -> Finding:
    prescribed = _prescribed(medication, days)
    cytopenia = _cytopenia(ctx)
    state = ctx.critical_neutrophils
    if cytopenia:
        summary = _fit(
            f"{upper_first(prescribed)} with {cytopenia}: confirm today how it is taken; if "
            "daily, stop it.",
            f"Methotrexate on more than 2 days a week with {cytopenia}: confirm how it is "
            "taken today.",
        )
    else:
        summary = _fit(
            f"{upper_first(prescribed)} on the medication list: confirm today how the patient "
            "takes it.",
            "Methotrexate on more than 2 days a week: confirm today how the patient takes it.",
        )
    return Finding(
        indicator="critical" if cytopenia else "warning",
        summary=summary,
        evidence=[
            f"{medication.display}: {medication.dose.description}"
            + (f", current since {day(exposure.start)}." if exposure.start else ", current."),
            f"Schedule read: {days.describe()}; the limit is 2 days in any 7.",
            *_route_line(medication),
            *count_evidence(ctx.record, ctx.knowledge, state),
        ],
        recommendations=[
            "Confirm today how the patient takes methotrexate: ask the patient or carer and "
            "check the pharmacy label.",
            "If daily doses were taken: stop it, check CBC, renal and liver tests, and give "
            "leucovorin per the label.",
            WEEKLY_RULE,
            PROTOCOL,
        ],
        sources=list(SOURCES),
        orders=[
            SuggestedOrder(
                "cbc",
                "stat" if cytopenia else "urgent",
                "Order CBC with differential" + (" (stat)" if cytopenia else ""),
                recommended=True,
            )
        ],
        override_reasons=list(OVERRIDE_REASONS),
        decisive=prescribed,
        about_counts=False,
    )


def _current_records(record: PatientRecord) -> tuple[DrugExposure, MedicationRecord] | None:
    exposure = record.exposure("methotrexate")
    if exposure is None or not exposure.current:
        return None
    current = [m for m in exposure.records if m.exposure == "current"]
    for medication in sorted(current, key=lambda m: m.start.timestamp() if m.start else 0.0)[::-1]:
        if too_frequent(medication):
            return exposure, medication
    return None


def methotrexate_daily_dosing(ctx: RuleContext) -> Finding | None:
    """Methotrexate (any product) by mouth, subcutaneously or intramuscularly on more than two
    days in any 7 days (`periodUnit` d with `period` < 3.5, "once daily", "every other day",
    a daily timing code or order text), never a weekly dose (period 7 d or 1 wk), a weekly dose
    split into up to 3 doses, or twice weekly. Order hooks: an evaluated draft, critical;
    suggestions: update the draft to the same dose once weekly (recommended) or cancel it
    (delete by resourceId); override reasons: oncology protocol, obstetric protocol (e.g.
    ectopic pregnancy), other specialist protocol, a weekly dose split over one day.
    Patient-view: a current record, warning ("confirm today how the patient takes
    methotrexate; if daily doses were taken: stop it, CBC, renal and liver tests, and
    leucovorin per the label"), critical with a cytopenia.

    Choices where the spec is silent: in order hooks only the drafts are judged (the chart's
    current records are the patient-view card's); with several such drafts the first is the
    card's subject; in patient-view the newest current record with such a schedule is the
    subject, even beside a newer weekly record (a daily entry still active on the list is
    what a pharmacist or carer may read, so it is worth confirming). The card is not
    about the counts, so fever does not rewrite it; it stands beside any cytopenia card (a
    dosing error is its own problem)."""
    if ctx.hook == "patient-view":
        found = _current_records(ctx.record)
        if found is None:
            return None
        exposure, medication = found
        days = too_frequent(medication)
        return _current_finding(ctx, exposure, medication, days) if days else None
    for drug in evaluated_drugs(ctx.record):
        days = too_frequent(drug.medication)
        if days is not None:
            return _draft_finding(ctx, drug, days)
    return None
