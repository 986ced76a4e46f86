"""THIOPURINE_PGX (CPIC): a thiopurine with no TPMT/NUDT15 result, a reduced-activity
phenotype, or a bare activity number. One rule on every hook: on patient-view it judges the
current thiopurines, on the order hooks the evaluated thiopurine drafts (and offers a change to
the draft); both give the same card."""

from __future__ import annotations

from cds_service.knowledge import Ingredient
from cds_service.protocol.hooks import ORDER_HOOKS
from cds_service.rules.base import Finding, RuleContext, SuggestedOrder
from cds_service.rules.drafts import cancel_draft, dose_lines, evaluated_drugs, reduce_draft
from cds_service.rules.drugs import drug_sources

# Phenotypes that call for a reduced thiopurine dose or another drug (CPIC).
REDUCED_PHENOTYPES = ("intermediate", "poor", "low activity")
# CPIC: intermediate metabolizer, 30-80% of the normal starting dose; half is inside that range
# for a single TPMT or NUDT15 result and a dose that can be given (one of two tablets).
INTERMEDIATE_FRACTION = 0.5


def thiopurine_pgx(ctx: RuleContext) -> Finding | None:
    """THIOPURINE_PGX: evaluated drafts on order hooks, current exposure on patient-view."""
    if ctx.hook in ORDER_HOOKS:
        return _drafted_thiopurines(ctx)
    return _current_thiopurines(ctx)


def _current_thiopurines(ctx: RuleContext) -> Finding | None:
    """Azathioprine or mercaptopurine (patient-view: started or dose-increased <= 90 days
    ago, or a cytopenia card fired) with no TPMT/NUDT15 result (info), an intermediate or
    poor phenotype or low activity (warning), or a bare activity number (info). CPIC."""
    thiopurines = [
        e for e in ctx.record.exposures.values() if e.current and e.ingredient.thiopurine
    ]
    relevant = [
        e
        for e in thiopurines
        if e.started_recently or e.dose_increased_recently or ctx.has_fired_family("cytopenia")
    ]
    if not relevant:
        return None
    return _pgx_finding(
        ctx, [e.ingredient for e in relevant], ", ".join(e.describe() for e in relevant)
    )


def _drafted_thiopurines(ctx: RuleContext) -> Finding | None:
    """THIOPURINE_PGX for evaluated azathioprine or mercaptopurine drafts (clinical rules §3:
    "order hooks: an evaluated draft"), with the dose per kg (§2.5). On an intermediate or low
    activity result the draft can be updated to half the ordered dose (inside CPIC's 30-80%);
    on a poor metabolizer result, cancelling it is recommended (CPIC: a non-thiopurine).

    Choice where the spec is silent: CPIC gives a range, not a number; half is the dose that
    can be given as one of two tablets. When TPMT and NUDT15 are both intermediate (20-50%)
    the card says so in text; the suggested half is at the top of that range.
    """
    drugs = [d for d in evaluated_drugs(ctx.record) if d.ingredient.thiopurine]
    if not drugs:
        return None
    ingredients = list({d.ingredient.id: d.ingredient for d in drugs}.values())
    finding = _pgx_finding(ctx, ingredients, "; ".join(d.describe() for d in drugs))
    if finding is None:
        return None
    finding.evidence += dose_lines(ctx, drugs)
    primary = drugs[0]
    phenotypes = {
        r.phenotype for r in ctx.record.pharmacogenomics if r.phenotype in REDUCED_PHENOTYPES
    }
    if finding.indicator == "warning" and primary.draft.resource_id:
        poor = "poor" in phenotypes
        changes = [cancel_draft(primary, None, recommended=poor)]
        # Only TPMT known: the NUDT15 test travels with the reduced dose (the card offers one
        # choice on the draft, so a separate order would exclude the reduction).
        nudt15 = next((o for o in finding.orders if o.kind == "tpmt_nudt15"), None)
        if not poor:
            reduce = reduce_draft(
                primary,
                INTERMEDIATE_FRACTION,
                "CPIC: 30-80% for an intermediate result",
                nudt15,
                True,
            )
            if reduce and nudt15:
                finding.orders = [o for o in finding.orders if o is not nudt15]
            if reduce:
                changes.append(reduce)
        finding.draft_changes = changes
    return finding


def _pgx_finding(ctx: RuleContext, ingredients: list[Ingredient], described: str) -> Finding | None:
    """The THIOPURINE_PGX card for these thiopurines, on any hook."""
    results = ctx.record.pharmacogenomics
    evidence = [f"Thiopurine: {described}"]
    reduced = [r for r in results if r.phenotype in REDUCED_PHENOTYPES]
    bare = [r for r in results if r.phenotype is None]
    recommendations = [
        "CPIC: intermediate metabolizer, start at 30-80% of the normal dose; TPMT and NUDT15 "
        "both intermediate, 20-50%; poor metabolizer, choose a non-thiopurine for non-malignant "
        "disease.",
        "A phenotype measured within 90 days of a red-cell transfusion is unreliable.",
        "TPMT testing never replaces CBC monitoring (label).",
    ]
    name = ingredients[0].display
    if reduced:
        evidence += [f"{r.gene}: {r.received} ({r.phenotype})" for r in reduced]
        nudt15_known = any("NUDT15" in r.gene for r in results)
        orders = []
        if not nudt15_known:
            # CPIC doses by both genes: an intermediate TPMT result alone leaves a NUDT15
            # variant (both intermediate: 20-50%) unseen.
            evidence.append("No NUDT15 result on file: only TPMT is known.")
            recommendations.insert(0, "Test NUDT15 too: CPIC doses by TPMT and NUDT15 together.")
            orders.append(
                SuggestedOrder("tpmt_nudt15", "routine", "Order NUDT15 (with TPMT) testing")
            )
        summary = f"{reduced[0].gene} {reduced[0].phenotype}: reduce the {name} dose per CPIC"
        summary += "." if nudt15_known else "; test NUDT15 too."
        return Finding(
            rule="THIOPURINE_PGX",
            indicator="warning",
            summary=summary,
            evidence=evidence,
            recommendations=recommendations,
            sources=["cpic_thiopurines", *drug_sources(ingredients)],
            orders=orders,
            override_reasons=["already-addressed", "benefit-outweighs-risk"],
        )
    if bare and len(bare) == len(results):
        evidence += [
            f"{r.gene}: {r.received} with no interpretation or reference range" for r in bare
        ]
        return Finding(
            rule="THIOPURINE_PGX",
            indicator="info",
            summary=f"{bare[0].gene} result has no phenotype: ask the lab before dosing {name}.",
            evidence=evidence,
            recommendations=["Ask the lab for the metabolizer phenotype.", *recommendations],
            sources=["cpic_thiopurines", *drug_sources(ingredients)],
            override_reasons=["already-addressed"],
        )
    if results:
        return None
    evidence.append("No TPMT or NUDT15 result on file.")
    return Finding(
        rule="THIOPURINE_PGX",
        indicator="info",
        summary=f"No TPMT/NUDT15 result on file for {name}: test before or early in therapy.",
        evidence=evidence,
        recommendations=["Test TPMT and NUDT15 status.", *recommendations],
        sources=["cpic_thiopurines", *drug_sources(ingredients)],
        orders=[
            SuggestedOrder(
                "tpmt_nudt15", "routine", "Order TPMT and NUDT15 testing", recommended=True
            )
        ],
        override_reasons=["already-addressed", "benefit-outweighs-risk"],
    )
