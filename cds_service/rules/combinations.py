"""Dangerous combinations made by a draft order (clinical rules §3 ORDER_MYELOTOXIC_LOW_COUNTS
v3): a thiopurine with allopurinol or febuxostat, methotrexate with trimethoprim. Each says which
drug to change and how, citing the label that describes the interaction."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from cds_service.rules.assessments import dangerous_combinations
from cds_service.rules.base import RuleContext, upper_first
from cds_service.rules.drafts import DraftDrug

# How the interacting drugs are named on cards.
_SHOWN = {"trimethoprim": "trimethoprim (TMP-SMX)"}


def _shown(ingredient_id: str) -> str:
    return _SHOWN.get(ingredient_id, ingredient_id)


@dataclass(frozen=True)
class Combination:
    drafted: DraftDrug
    drug: str  # the thiopurine or methotrexate
    partner: str  # allopurinol, febuxostat or trimethoprim
    source: str  # the label that describes the interaction
    # The label's dose range with the partner (knowledge/medications.yaml), e.g. 1/4-1/3.
    dose_fraction: tuple[Fraction, Fraction] | None = None

    @property
    def fraction_text(self) -> str:
        """The label's range as the cards write it, highest first: "1/3-1/4"."""
        if self.dose_fraction is None:
            raise ValueError(f"{self.text}: the knowledge gives no dose range")
        low, high = self.dose_fraction
        return f"{high}-{low}"

    @property
    def thiopurine_allopurinol(self) -> bool:
        return self.partner == "allopurinol"

    @property
    def contraindicated(self) -> bool:
        """Thiopurine with febuxostat: its label contraindicates the pair, so no reduced dose
        is offered."""
        return self.partner == "febuxostat"

    @property
    def text(self) -> str:
        return f"{_shown(self.drug)} with {_shown(self.partner)}"

    @property
    def drafted_is_partner(self) -> bool:
        return self.drafted.ingredient.id == self.partner

    def advice(self) -> str:
        """Which drug to change and how (clinical rules §3 ORDER_MYELOTOXIC_LOW_COUNTS v3)."""
        drug, partner = self.drug, _shown(self.partner)
        if self.contraindicated:
            return (
                f"Febuxostat with {drug} is contraindicated (febuxostat label): use another "
                f"urate-lowering drug; with allopurinol, {drug} at 1/3-1/4 of its dose ({drug} "
                "label)."
            )
        if self.thiopurine_allopurinol:
            share = self.fraction_text
            how = (
                f"reduce {drug} to {share} of its usual dose ({drug} label), or choose a "
                "urate-lowering drug other than allopurinol or febuxostat"
            )
            if self.drafted_is_partner:
                return f"{upper_first(partner)} with current {drug}: {how}."
            return f"{upper_first(drug)} with {partner}: {how}."
        if self.drafted_is_partner:
            return (
                f"Choose another antibiotic or PJP prophylaxis agent: {partner} adds antifolate "
                "marrow toxicity to methotrexate (methotrexate label)."
            )
        return (
            f"Methotrexate with current {partner}: change the antibiotic or PJP agent first "
            "(methotrexate label)."
        )

    def summary(self) -> str:
        drug, partner = self.drug, _shown(self.partner)
        if self.contraindicated and self.drafted_is_partner:
            return (
                f"Febuxostat with current {drug}: contraindicated (label); cancel it and use "
                "another urate-lowering drug."
            )
        if self.contraindicated:
            return (
                f"{upper_first(drug)} with current febuxostat: contraindicated (febuxostat "
                "label); stop febuxostat first."
            )
        if self.thiopurine_allopurinol and self.drafted_is_partner:
            return (
                f"{upper_first(partner)} with current {drug}: reduce {drug} to "
                f"{self.fraction_text} (label) or use another urate-lowering drug."
            )
        if self.thiopurine_allopurinol:
            share = self.fraction_text
            return (
                f"{upper_first(drug)} with {partner}: reduce {drug} to {share} of the dose (label)."
            )
        if self.drafted_is_partner:
            return (
                f"{upper_first(partner)} with current methotrexate: choose another antibiotic "
                "or PJP agent."
            )
        return f"Methotrexate with current {partner}: change the antibiotic or PJP agent first."


def drafted_combinations(ctx: RuleContext, drugs: list[DraftDrug]) -> list[Combination]:
    """Dangerous combinations that an evaluated draft makes with a current drug or with
    another draft of the session (co-exposure, even an unselected one)."""
    record, k = ctx.record, ctx.knowledge
    co_exposure = [m.ingredient for d in record.draft_orders for m in d.medications]
    current = {e.ingredient.id for e in record.exposures.values() if e.current}
    known = {
        (drug, partner): c for c in k.combinations for drug in c.drugs for partner in c.partners
    }
    found = []
    for drug, partner, _ in dangerous_combinations(record, k, co_exposure):
        if drug in current and partner in current:
            continue  # not this order's doing: DRUG_CYTOPENIA_DOSE_REVIEW on patient-view
        for drafted in drugs:
            if drafted.ingredient.id in (drug, partner):
                pair = known[(drug, partner)]
                found.append(Combination(drafted, drug, partner, pair.source, pair.dose_fraction))
    return found
