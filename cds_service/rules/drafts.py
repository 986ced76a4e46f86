"""Draft orders as the order rules see them (clinical rules §3 "Which draft orders the order
rules evaluate"), and the actions a card offers on a draft: cancel it, update it to a reduced
dose or put it on hold, each with the CBC or test order that goes with it."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from cds_service.knowledge import Ingredient
from cds_service.record import DraftOrder, DrugExposure, MedicationRecord, PatientRecord
from cds_service.record.dosing import (
    dose_step,
    reduced_order,
    round_down,
    sig3,
    without_unit_codes,
)
from cds_service.rules.base import DraftOrderChange, RuleContext, SuggestedOrder
from cds_service.rules.drugs import mg_per_kg_line, per_kg_limit


@dataclass(frozen=True)
class DraftDrug:
    """One drug of one evaluated draft order."""

    draft: DraftOrder
    medication: MedicationRecord

    @property
    def ingredient(self) -> Ingredient:
        return self.medication.ingredient

    def describe(self) -> str:
        """The draft with its dose as prescribed ("15 mg once weekly"; clinical rules §2.5)."""
        return f"{self.medication.display}: draft order, {self.medication.dose.description}"

    def as_exposure(self) -> DrugExposure:
        """The draft as an exposure of its own, so the dose helpers read its dose."""
        return DrugExposure(
            ingredient=self.ingredient,
            current=False,
            recent=False,
            start=None,
            last_dose=None,
            records=(self.medication,),
            started_recently=False,
            dose_increased_recently=False,
        )


def evaluated_drugs(record: PatientRecord) -> list[DraftDrug]:
    return [DraftDrug(d, m) for d in record.evaluated_drafts() for m in d.medications]


def draft_course(record: PatientRecord, drug: DraftDrug) -> str:
    """new start | dose increase | same or lower dose | dose not comparable."""
    exposure = record.exposure(drug.ingredient.id)
    if exposure is None or not exposure.current:
        return "new start"
    current = exposure.latest_dose
    ordered = drug.medication.dose.mg_per_day
    if current is None or current.mg_per_day is None or ordered is None:
        return "dose not comparable"
    return "dose increase" if ordered > current.mg_per_day * 1.001 else "same or lower dose"


def cbc_order(priority: str, label: str, recommended: bool = False) -> SuggestedOrder:
    return SuggestedOrder("cbc", priority, label, recommended)  # type: ignore[arg-type]


def cancel_draft(
    drug: DraftDrug, then: SuggestedOrder | None, recommended: bool
) -> DraftOrderChange:
    """Delete the draft; the card's label adds the order that goes with it (cards.py)."""
    return DraftOrderChange(
        "delete",
        str(drug.draft.resource_id),
        f"Cancel the {drug.ingredient.display} order",
        recommended=recommended,
        with_orders=(then,) if then else (),
    )


def orderable_dose(drug: DraftDrug, at_most_per_dose_mg: float) -> float | None:
    """The highest dose the patient can take that is at most `at_most_per_dose_mg`: rounded
    down to the product's strength steps (half tablets only for scored tablets; the
    ingredient's step, azathioprine 25 mg, when the product is unknown). None when no step is
    known, or the result would be zero or no lower than the drafted dose."""
    dose = drug.medication.dose
    step = dose_step(dose, drug.ingredient.dose_step_mg)
    if step is None or dose.per_dose_mg is None:
        return None
    rounded = round_down(at_most_per_dose_mg, step)
    if rounded <= 0 or rounded >= dose.per_dose_mg - 1e-9:
        return None
    return rounded


def reduce_draft(
    drug: DraftDrug,
    at_most_per_dose_mg: float,
    why: str,
    then: SuggestedOrder | None,
    recommended: bool,
) -> DraftOrderChange | None:
    """Update the draft to an orderable lower dose ("Reduce azathioprine to 25 mg (half a 50
    mg tablet) once daily (label: 1/3-1/4 of 100 mg = 25-33 mg)"); None when no orderable
    dose exists, and the card's text then advises the reduction."""
    target = orderable_dose(drug, at_most_per_dose_mg)
    reduced = reduced_order(drug.draft.raw, drug.medication.dose, target) if target else None
    if reduced is None:
        return None
    return DraftOrderChange(
        "update",
        str(drug.draft.resource_id),
        f"Reduce {drug.ingredient.display} to {reduced.description} ({why})",
        resource=reduced.resource,
        recommended=recommended,
        with_orders=(then,) if then else (),
    )


def fraction_range(drug: DraftDrug, low: Fraction, high: Fraction) -> str:
    """The label's range on the drafted dose: "1/3-1/4 of 100 mg = 25-33 mg"."""
    per_dose = drug.medication.dose.per_dose_mg or 0.0
    return f"{high}-{low} of {_mg(per_dose)} mg = {_mg(per_dose * low)}-{_mg(per_dose * high)} mg"


def _mg(value: float) -> str:
    """Whole milligrams from 10 mg up ("33", not "33.3"), else 3 significant digits."""
    return sig3(round(value)) if 10 <= value < 1e15 else sig3(value)


def defer_draft(drug: DraftDrug, then: SuggestedOrder) -> DraftOrderChange:
    """Keep the draft for later, on hold, and order the CBC that decides it."""
    resource = without_unit_codes(drug.draft.raw, drug.medication.dose)
    resource["status"] = "on-hold"
    return DraftOrderChange(
        "update",
        str(drug.draft.resource_id),
        f"Defer: put the {drug.ingredient.display} order on hold",
        resource=resource,
        with_orders=(then,),
    )


def dose_lines(ctx: RuleContext, drugs: list[DraftDrug]) -> list[str]:
    """The drafted thiopurine doses as prescribed, with mg/kg/day (and the azathioprine limit)."""
    lines = []
    for drug in drugs:
        limit = per_kg_limit(ctx, drug.ingredient)
        if drug.ingredient.id == "azathioprine" or drug.ingredient.thiopurine:
            line = mg_per_kg_line(
                ctx.record, drug.as_exposure(), limit, ctx.threshold("weight_stale_days")
            )
            if line:
                lines.append(line)
    return lines
