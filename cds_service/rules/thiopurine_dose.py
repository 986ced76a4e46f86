"""THIOPURINE_PGX with a reduced TPMT/NUDT15 phenotype on file (clinical rules §3 v4): the CPIC
tier that applies and the thiopurine dose against its starting range. Assessed
(`PhenotypeAssessment`), then worded; rules/pharmacogenomics.py decides when it applies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cds_service.knowledge import Ingredient
from cds_service.record.dosing import DailyDose, sig3
from cds_service.rules.base import (
    MAX_SUMMARY,
    DraftOrderChange,
    Finding,
    Indicator,
    RuleContext,
    SuggestedOrder,
)
from cds_service.rules.drafts import DraftDrug, cancel_draft, reduce_draft
from cds_service.rules.drugs import drug_lines, drug_sources

PGX_CAVEATS = (
    "A phenotype measured within 90 days of a red-cell transfusion is unreliable.",
    "TPMT testing never replaces CBC monitoring (label).",
)


@dataclass(frozen=True)
class Thiopurine:
    """One thiopurine the card is about: its dose and whether it is a new start, a dose
    increase, or an established dose."""

    ingredient: Ingredient
    described: str
    dose: DailyDose | None
    course: str  # new start | dose increase | established
    draft: DraftDrug | None = None


def _genes_text(genes: dict[str, str], abnormal: dict[str, str]) -> str:
    """ "NUDT15 intermediate, TPMT normal": the abnormal gene(s) first, then the normal one."""

    def one(gene: str, phenotype: str) -> str:
        if gene in ("TPMT", "NUDT15"):
            return f"{gene} {phenotype}"
        return f"TPMT/NUDT15 {phenotype} (gene not named)"

    shown = [one(g, p) for g, p in abnormal.items()]
    shown += [one(g, p) for g, p in genes.items() if g not in abnormal]
    return ", ".join(shown)


# A dose within 0.1% of the top of the range is within it (mg/kg/day is rounded for display).
_ROUNDING = 1.001


# What a reduced phenotype means for the dose on file (THIOPURINE_PGX v4).
Verdict = Literal[
    "non-thiopurine", "weight needed", "above range", "within range", "established above"
]


@dataclass(frozen=True)
class CpicTier:
    """The CPIC recommendation that applies to the phenotypes on file."""

    name: str  # "intermediate metabolizer", "TPMT and NUDT15 both intermediate", ...
    fraction: tuple[float, float] | None  # of the normal starting dose; None: poor metabolizer
    source: str


def cpic_tier(ctx: RuleContext, abnormal: dict[str, str]) -> CpicTier:
    """Poor metabolizer, both genes intermediate (CPIC update of March 2024), or one gene
    intermediate (CPIC 2018). The fractions are the knowledge's (thresholds.yaml)."""
    if any(p == "poor" for p in abnormal.values()):
        return CpicTier("poor metabolizer", None, "cpic_thiopurines")
    if len([g for g in abnormal if g in ("TPMT", "NUDT15")]) == 2:
        both = both_intermediate(ctx)
        return CpicTier("TPMT and NUDT15 both intermediate", both, "cpic_thiopurines_update")
    return CpicTier("intermediate metabolizer", one_intermediate(ctx), "cpic_thiopurines")


def one_intermediate(ctx: RuleContext) -> tuple[float, float]:
    return (
        ctx.threshold("cpic_one_intermediate_low_fraction"),
        ctx.threshold("cpic_one_intermediate_high_fraction"),
    )


def both_intermediate(ctx: RuleContext) -> tuple[float, float]:
    return (
        ctx.threshold("cpic_both_intermediate_low_fraction"),
        ctx.threshold("cpic_both_intermediate_high_fraction"),
    )


def shown_percent(fraction: tuple[float, float]) -> str:
    """ "30-80%": a CPIC fraction of the normal starting dose as the card writes it."""
    return f"{fraction[0] * 100:.0f}-{fraction[1]:.0%}"


def _normal_start(ctx: RuleContext, ingredient: Ingredient) -> tuple[float, float]:
    """The CPIC normal starting dose in mg/kg/day; a thiopurine the knowledge gives none for
    is compared with azathioprine's (medications.yaml)."""
    start = (
        ingredient.cpic_normal_start_mg_per_kg
        or ctx.knowledge.ingredients["azathioprine"].cpic_normal_start_mg_per_kg
    )
    assert start is not None  # medications.yaml gives azathioprine its CPIC normal start
    return start


def _per_kg(ctx: RuleContext, dose: DailyDose | None) -> float | None:
    weight = ctx.record.weight
    if dose is None or dose.mg_per_day is None or dose.weekly or weight is None:
        return None
    return dose.mg_per_day / weight.kg


@dataclass(frozen=True)
class PhenotypeAssessment:
    """A reduced phenotype on file, judged (the decision; `phenotype_finding` words it)."""

    genes: str  # "NUDT15 intermediate, TPMT normal": the abnormal gene(s) first
    tier: CpicTier
    dose_range: tuple[float, float] | None  # the tier's starting range, mg/kg/day
    per_kg: float | None  # the dose on file, mg/kg/day
    verdict: Verdict
    indicator: Indicator
    nudt15_known: bool
    gene_named: bool  # the result names TPMT or NUDT15 (else ask the lab which gene)


def assess_phenotype(
    ctx: RuleContext, primary: Thiopurine, genes: dict[str, str], abnormal: dict[str, str]
) -> PhenotypeAssessment:
    """Compare the dose with the CPIC starting range of the tier that applies: "start at
    (reduce to) at most" only for a new start or a dose increase above it, or an established
    dose above it with a cytopenia card now.

    Choices where the spec is silent: a lab result that names no gene ("intermediate") counts
    as one intermediate gene and the card asks the lab which gene; with no weight the card
    cannot compare, so it is a warning for a new start or increase and info otherwise; a
    poor metabolizer is always a warning (CPIC: a non-thiopurine)."""
    tier = cpic_tier(ctx, abnormal)
    starting = primary.course in ("new start", "dose increase")
    per_kg = _per_kg(ctx, primary.dose)
    dose_range = None
    verdict: Verdict
    if tier.fraction is None:
        verdict = "non-thiopurine"
    else:
        start = _normal_start(ctx, primary.ingredient)
        dose_range = (start[0] * tier.fraction[0], start[1] * tier.fraction[1])
        if per_kg is None:
            verdict = "weight needed"
        elif per_kg <= dose_range[1] * _ROUNDING:
            verdict = "within range"
        elif starting or ctx.has_fired_family("cytopenia"):
            verdict = "above range"
        else:
            verdict = "established above"
    warns = verdict in ("non-thiopurine", "above range") or (
        verdict == "weight needed" and starting
    )
    return PhenotypeAssessment(
        genes=_genes_text(genes, abnormal),
        tier=tier,
        dose_range=dose_range,
        per_kg=per_kg,
        verdict=verdict,
        indicator="warning" if warns else "info",
        nudt15_known="NUDT15" in genes or any("NUDT15" in g for g in genes),
        gene_named=bool(genes.keys() & {"TPMT", "NUDT15"}),
    )


def _phenotype_summary(a: PhenotypeAssessment, primary: Thiopurine) -> str:
    name = primary.ingredient.display
    if a.verdict == "non-thiopurine":
        return f"{a.genes}: choose a non-thiopurine instead of {name} (CPIC)."
    assert a.tier.fraction is not None and a.dose_range is not None
    shown_range = _shown_range(a.dose_range)
    if a.verdict == "weight needed":
        summary = (
            f"{a.genes}: {'start' if primary.course == 'new start' else 'keep'} {name} "
            f"at {shown_percent(a.tier.fraction)} of the normal dose (CPIC); weight needed "
            "for mg/kg/day."
        )
    elif a.verdict == "above range":
        assert a.per_kg is not None
        verb = "start at" if primary.course == "new start" else "reduce to"
        summary = (
            f"{a.genes}: {name} {sig3(a.per_kg)} mg/kg/day is above the CPIC range; "
            f"{verb} no more than {sig3(a.dose_range[1])} mg/kg/day."
        )
    else:
        assert a.per_kg is not None
        where = "within" if a.verdict == "within range" else "established above"
        summary = (
            f"{a.genes}: {name} {sig3(a.per_kg)} mg/kg/day, {where} the CPIC starting "
            f"range ({shown_range})."
        )
    if len(summary) > MAX_SUMMARY:
        summary = f"{a.genes}: {name} dose compared with the CPIC range ({shown_range})."
    return summary


def _shown_range(dose_range: tuple[float, float]) -> str:
    return f"{sig3(dose_range[0])}-{sig3(dose_range[1])} mg/kg/day"


def _tier_advice(a: PhenotypeAssessment, name: str) -> str:
    """The one CPIC line of the tier that applies (v4: never the other tiers)."""
    if a.tier.fraction is None or a.dose_range is None:
        return "CPIC, poor metabolizer: choose a non-thiopurine for non-malignant disease."
    return (
        f"CPIC, {a.tier.name}: start at {shown_percent(a.tier.fraction)} of the normal "
        f"starting dose ({name} {_shown_range(a.dose_range)}), then adjust to the counts; "
        "allow 2-4 weeks at each dose."
    )


def _phenotype_evidence(ctx: RuleContext, primary: Thiopurine, a: PhenotypeAssessment) -> list[str]:
    evidence = [f"TPMT/NUDT15: {a.genes}"]
    evidence += [f"{r.gene} result: {r.received}" for r in ctx.record.pharmacogenomics]
    exposures = [
        e for e in ctx.record.exposures.values() if e.ingredient.id == primary.ingredient.id
    ]
    if primary.draft is None and exposures:
        evidence += drug_lines(ctx, exposures[:1])
    evidence.append(f"Course: {primary.course}.")
    if not a.nudt15_known:
        evidence.append("No NUDT15 result on file: only TPMT is known.")
    return evidence


def _draft_changes(
    ctx: RuleContext, primary: Thiopurine, a: PhenotypeAssessment, test: SuggestedOrder | None
) -> list[DraftOrderChange]:
    """On an order hook: cancel a poor metabolizer's draft (recommended), or update a draft
    above the range to the top of it, with cancelling offered beside it."""
    draft = primary.draft
    if draft is None:
        return []
    if a.verdict == "non-thiopurine":
        return [cancel_draft(draft, None, recommended=True)] if draft.draft.resource_id else []
    if a.verdict != "above range" or a.dose_range is None:
        return []
    change = _reduce_to_range(ctx, primary, a.dose_range[1], a.tier.name, test)
    if change is None:
        return []
    return [cancel_draft(draft, None, recommended=False), change]


def phenotype_finding(
    ctx: RuleContext, drugs: list[Thiopurine], genes: dict[str, str], abnormal: dict[str, str]
) -> Finding:
    """A reduced phenotype on file: name the genes, show the CPIC tier that applies and
    compare the dose with its starting range (`assess_phenotype`)."""
    primary = drugs[0]
    a = assess_phenotype(ctx, primary, genes, abnormal)
    recommendations = [_tier_advice(a, primary.ingredient.display)]
    test = None
    if not a.nudt15_known:
        recommendations.append("Test NUDT15 too: CPIC doses by TPMT and NUDT15 together.")
        test = SuggestedOrder("tpmt_nudt15", "routine", "Order NUDT15 (with TPMT) testing")
    if not a.gene_named:
        recommendations.append("Ask the lab which gene the phenotype belongs to.")
    recommendations += list(PGX_CAVEATS)
    changes = _draft_changes(ctx, primary, a, test)
    # Updating the draft takes the NUDT15 test along: one choice on the card, not two.
    carried = any(test in change.with_orders for change in changes)
    return Finding(
        indicator=a.indicator,
        summary=_phenotype_summary(a, primary),
        evidence=_phenotype_evidence(ctx, primary, a),
        recommendations=recommendations[:5],
        sources=list(
            dict.fromkeys(
                [a.tier.source, "cpic_thiopurines", *drug_sources([d.ingredient for d in drugs])]
            )
        ),
        draft_changes=changes,
        orders=[test] if test is not None and not carried else [],
        override_reasons=["already-addressed", "benefit-outweighs-risk"],
        decisive=a.genes,
    )


def _reduce_to_range(
    ctx: RuleContext,
    thiopurine: Thiopurine,
    high_mg_per_kg: float,
    tier: str,
    test: SuggestedOrder | None,
) -> DraftOrderChange | None:
    """Update the draft to the highest orderable dose at most the top of the CPIC range; an
    unknown NUDT15 test travels with it (the card offers one choice on the draft)."""
    drug, weight = thiopurine.draft, ctx.record.weight
    if drug is None or weight is None or not drug.draft.resource_id:
        return None
    dose = drug.medication.dose
    if not dose.mg_per_day or not dose.per_dose_mg:
        return None
    per_dose = high_mg_per_kg * weight.kg * dose.per_dose_mg / dose.mg_per_day
    return reduce_draft(
        drug,
        per_dose,
        f"CPIC {tier}: at most {sig3(high_mg_per_kg)} mg/kg/day at {sig3(weight.kg)} kg",
        test,
        True,
    )
