"""THIOPURINE_PGX (CPIC): a thiopurine with no TPMT/NUDT15 result, a reduced-activity
phenotype, or a bare activity number. One rule on every hook: on patient-view it judges the
current thiopurines, on the order hooks the evaluated thiopurine drafts (and offers a change to
the draft); both give the same card.

v4 (clinical rules §3 THIOPURINE_PGX):
- no result and a severe cytopenia on the thiopurine (a critical card, ANC < 1.0 or WBC < 2.0):
  a warning with the genotype ordered `urgent`, and the cytopenia card carries one line saying
  so (`drugs.with_genotype_note`);
- a phenotype on file: the summary names the gene(s) with an abnormal phenotype and the normal
  one, the card shows the dose as prescribed with mg/kg/day and only the CPIC tier that applies
  (one gene intermediate 30-80% of the normal starting dose; both intermediate 20-50%, CPIC
  update of March 2024; poor, a non-thiopurine). These are starting doses: "start at (reduce
  to) at most" only for a new start or a dose increase above the range; otherwise info, never
  "reduce".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cds_service.knowledge import Ingredient
from cds_service.protocol.hooks import ORDER_HOOKS
from cds_service.record import DrugExposure
from cds_service.record.model import PharmacogenomicResult
from cds_service.rules.base import Finding, RuleContext, SuggestedOrder, shown_limit
from cds_service.rules.drafts import dose_lines, draft_course, evaluated_drugs
from cds_service.rules.drugs import drug_sources, phenotypes_unreadable
from cds_service.rules.thiopurine_dose import (
    PGX_CAVEATS,
    Thiopurine,
    both_intermediate,
    one_intermediate,
    phenotype_finding,
    shown_percent,
)

# Phenotypes that call for a reduced thiopurine dose or another drug (CPIC).
REDUCED_PHENOTYPES = ("intermediate", "poor", "low activity")
URGENT_REASON = (
    "severe cytopenia early in thiopurine therapy is the picture of TPMT/NUDT15 deficiency: "
    "the result decides whether and at what dose it can be restarted"
)


def thiopurine_pgx(ctx: RuleContext) -> Finding | None:
    """THIOPURINE_PGX: evaluated drafts on order hooks, current exposure on patient-view."""
    if ctx.hook in ORDER_HOOKS:
        return _drafted_thiopurines(ctx)
    return _current_thiopurines(ctx)


def severe_cytopenia(ctx: RuleContext) -> bool:
    """A critical cytopenia card fired, or the current final ANC is < 1.0 or WBC < 2.0 (the v4
    "severe cytopenia on the thiopurine")."""
    if ctx.has_fired_family("cytopenia", indicators=("critical",)):
        return True
    state = ctx.neutrophils
    anc_low = state.anc is not None and state.anc.value < ctx.threshold("moderate_neutropenia_anc")
    wbc_low = state.wbc is not None and state.wbc.value < ctx.threshold("severe_leukopenia_wbc")
    return anc_low or wbc_low


def _current_thiopurines(ctx: RuleContext) -> Finding | None:
    """Azathioprine or mercaptopurine (patient-view: started or dose-increased <= 90 days
    ago, or a cytopenia card fired) with no TPMT/NUDT15 result (info; warning after a severe
    cytopenia), a reduced phenotype, or a bare activity number. CPIC.

    Choice where the spec is silent: a thiopurine stopped in the last 90 days counts when a
    severe cytopenia fires (it was probably held because of it: the genotype decides whether
    it can be restarted)."""
    severe = severe_cytopenia(ctx)
    cytopenia = ctx.has_fired_family("cytopenia")
    relevant = [
        e
        for e in ctx.record.exposures.values()
        if e.ingredient.thiopurine
        and (e.current or (e.current_or_recent and severe))
        and (e.started_recently or e.dose_increased_recently or cytopenia)
    ]
    if not relevant:
        return None
    return _pgx_finding(ctx, [_of_exposure(e) for e in relevant], severe)


def _of_exposure(exposure: DrugExposure) -> Thiopurine:
    course = (
        "new start"
        if exposure.started_recently
        else "dose increase"
        if exposure.dose_increased_recently
        else "established"
    )
    return Thiopurine(exposure.ingredient, exposure.describe(), exposure.latest_dose, course)


def _drafted_thiopurines(ctx: RuleContext) -> Finding | None:
    """THIOPURINE_PGX for evaluated azathioprine or mercaptopurine drafts (clinical rules §3:
    "order hooks: an evaluated draft"), with the dose per kg (§2.5). Above the CPIC range for
    a new start or an increase, the draft can be updated to the highest orderable dose inside
    it (weight needed); on a poor metabolizer result, cancelling it is recommended (CPIC: a
    non-thiopurine). A renewal at the same or a lower dose is an established dose."""
    drugs = [d for d in evaluated_drugs(ctx.record) if d.ingredient.thiopurine]
    if not drugs:
        return None
    courses = {"same or lower dose": "established", "dose not comparable": "dose increase"}
    thiopurines = [
        Thiopurine(
            d.ingredient,
            d.describe(),
            d.medication.dose,
            courses.get(draft_course(ctx.record, d), draft_course(ctx.record, d)),
            d,
        )
        for d in drugs
    ]
    finding = _pgx_finding(ctx, thiopurines, severe_cytopenia(ctx))
    if finding is None:
        return None
    finding.evidence += dose_lines(ctx, drugs)
    return finding


def _gene_phenotypes(results: list[PharmacogenomicResult]) -> dict[str, str]:
    """Gene -> phenotype, newest result first; a result that names no gene counts under its
    own label ("TPMT and NUDT15")."""
    found: dict[str, str] = {}
    for result in sorted(results, key=lambda r: r.time.timestamp() if r.time else 0, reverse=True):
        pairs = result.genes or (
            ((result.gene, result.phenotype),) if result.phenotype is not None else ()
        )
        for gene, phenotype in pairs:
            found.setdefault(gene, phenotype)
    return found


@dataclass(frozen=True)
class PgxResults:
    """What the TPMT/NUDT15 results on file say for a thiopurine card (THIOPURINE_PGX)."""

    verdict: Literal["reduced phenotype", "no phenotype", "no result", "urgent genotype"]
    genes: dict[str, str] = field(default_factory=dict)  # gene -> phenotype, newest first
    abnormal: dict[str, str] = field(default_factory=dict)  # of those, the reduced ones
    bare: tuple[PharmacogenomicResult, ...] = ()  # activity numbers with no phenotype


def assess_results(ctx: RuleContext, severe: bool) -> PgxResults | None:
    """A reduced phenotype; only bare numbers; or no result at all (urgent after a severe
    cytopenia). None for a normal result, or results that could not be read (never "none")."""
    results = ctx.record.pharmacogenomics
    genes = _gene_phenotypes(results)
    abnormal = {g: p for g, p in genes.items() if p in REDUCED_PHENOTYPES}
    if abnormal:
        return PgxResults("reduced phenotype", genes, abnormal)
    bare = tuple(r for r in results if r.phenotype is None)
    if bare and len(bare) == len(results):
        return PgxResults("no phenotype", bare=bare)
    if results or phenotypes_unreadable(ctx):
        return None
    return PgxResults("urgent genotype" if severe else "no result")


def _pgx_finding(ctx: RuleContext, drugs: list[Thiopurine], severe: bool) -> Finding | None:
    """The THIOPURINE_PGX card for these thiopurines, on any hook."""
    found = assess_results(ctx, severe)
    if found is None:
        return None
    if found.verdict == "reduced phenotype":
        return phenotype_finding(ctx, drugs, found.genes, found.abnormal)
    evidence = [f"Thiopurine: {'; '.join(d.described for d in drugs)}"]
    ingredients = list({d.ingredient.id: d.ingredient for d in drugs}.values())
    if found.verdict == "no phenotype":
        return _no_phenotype(ingredients, found.bare, evidence)
    evidence.append("No TPMT or NUDT15 result on file.")
    if found.verdict == "urgent genotype":
        return _urgent_genotype(ctx, drugs, ingredients, evidence)
    return _no_result(ctx, drugs, ingredients, evidence)


def _no_phenotype(
    ingredients: list[Ingredient], bare: tuple[PharmacogenomicResult, ...], evidence: list[str]
) -> Finding:
    """Only activity numbers with no interpretation: the lab gives the phenotype."""
    evidence += [f"{r.gene}: {r.received} with no interpretation or reference range" for r in bare]
    return Finding(
        indicator="info",
        summary=f"{bare[0].gene} result has no phenotype: ask the lab before dosing "
        f"{ingredients[0].display}.",
        evidence=evidence,
        recommendations=["Ask the lab for the metabolizer phenotype.", *PGX_CAVEATS],
        sources=["cpic_thiopurines", *drug_sources(ingredients)],
        override_reasons=["already-addressed"],
    )


def _no_result(
    ctx: RuleContext, drugs: list[Thiopurine], ingredients: list[Ingredient], evidence: list[str]
) -> Finding:
    """No result on file: test, before or early in therapy for a new start (CPIC)."""
    new_start = any(d.course == "new start" for d in drugs)
    return Finding(
        indicator="info",
        summary=f"No TPMT/NUDT15 result on file for {ingredients[0].display}: "
        + ("test before or early in therapy." if new_start else "test TPMT and NUDT15."),
        evidence=evidence,
        recommendations=[
            "Test TPMT and NUDT15 status.",
            "CPIC: an intermediate metabolizer starts at "
            f"{shown_percent(one_intermediate(ctx))} of the normal starting "
            "dose, TPMT and NUDT15 both intermediate at "
            f"{shown_percent(both_intermediate(ctx))}; a poor metabolizer "
            "takes a non-thiopurine for non-malignant disease.",
            *PGX_CAVEATS,
        ],
        sources=["cpic_thiopurines", "cpic_thiopurines_update", *drug_sources(ingredients)],
        orders=[
            SuggestedOrder(
                "tpmt_nudt15", "routine", "Order TPMT and NUDT15 testing", recommended=True
            )
        ],
        override_reasons=["already-addressed", "benefit-outweighs-risk"],
    )


def _urgent_genotype(
    ctx: RuleContext, drugs: list[Thiopurine], ingredients: list[Ingredient], evidence: list[str]
) -> Finding:
    """No result and a severe cytopenia on the thiopurine (v4): the genotype, urgently. The
    azathioprine label: "In patients with severe myelosuppression, consider evaluation for
    TPMT and NUDT15 deficiency"; the genotype, not the enzyme activity (a transfusion given
    for the cytopenia makes the activity unreliable)."""
    name = ingredients[0].display
    anc = shown_limit(ctx.threshold("moderate_neutropenia_anc"), 1)
    wbc = shown_limit(ctx.threshold("severe_leukopenia_wbc"), 1)
    evidence.append(
        f"Severe cytopenia now (a critical cytopenia card, ANC < {anc} or WBC < {wbc})."
    )
    return Finding(
        indicator="warning",
        summary=f"Severe cytopenia on {name}, no TPMT/NUDT15 result: genotype TPMT and NUDT15 "
        "urgently.",
        evidence=evidence,
        recommendations=[
            f"Genotype TPMT and NUDT15 urgently: {URGENT_REASON}.",
            "Order the genotype, not the enzyme activity: after a transfusion the activity is "
            "unreliable.",
            "TPMT testing never replaces CBC monitoring (label).",
        ],
        sources=[*drug_sources(ingredients), "cpic_thiopurines"],
        orders=[
            SuggestedOrder(
                "tpmt_nudt15", "urgent", "Order TPMT and NUDT15 genotype (urgent)", recommended=True
            )
        ],
        override_reasons=["already-addressed"],
        decisive=f"severe cytopenia on {name}",
    )
