"""Draft orders as the order rules see them (clinical rules §3 "Which draft orders the order
rules evaluate"), and the actions a card offers on a draft: cancel it, update it to a reduced
dose or put it on hold, each with the CBC or test order that goes with it."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from cds_service.knowledge import Ingredient
from cds_service.record import DraftOrder, DrugExposure, MedicationRecord, PatientRecord
from cds_service.record.dosing import reduced_order
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


def cbc_order(priority: str, label: str, recommended: bool = False) -> SuggestedOrder:
    return SuggestedOrder("cbc", priority, label, recommended)  # type: ignore[arg-type]


def cancel_draft(
    drug: DraftDrug, then: SuggestedOrder | None, recommended: bool
) -> DraftOrderChange:
    label = f"Cancel the {drug.ingredient.display} order" + (
        " and order a CBC with differential" if then else ""
    )
    return DraftOrderChange(
        "delete",
        str(drug.draft.resource_id),
        label,
        recommended=recommended,
        with_orders=(then,) if then else (),
    )


def reduce_draft(
    drug: DraftDrug, fraction: float, why: str, then: SuggestedOrder | None, recommended: bool
) -> DraftOrderChange | None:
    reduced = reduced_order(drug.draft.raw, fraction)
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


def defer_draft(drug: DraftDrug, then: SuggestedOrder) -> DraftOrderChange:
    """Keep the draft for later, on hold, and order the CBC that decides it."""
    resource = copy.deepcopy(dict(drug.draft.raw))
    resource["status"] = "on-hold"
    return DraftOrderChange(
        "update",
        str(drug.draft.resource_id),
        f"Defer: put the {drug.ingredient.display} order on hold and order a CBC with "
        "differential (stat)",
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
