"""Drug rules: DRUG_CYTOPENIA_DOSE_REVIEW and THIOPURINE_PGX."""

from __future__ import annotations

from datetime import timedelta

from cds_service.fhir_dates import day, days_between
from cds_service.knowledge import Ingredient, Knowledge
from cds_service.record import DrugExposure, PatientRecord
from cds_service.rules.assessments import (
    count_evidence,
    dangerous_combinations,
    dose_review_reasons,
    fmt,
    is_low_wbc,
    neutrophil_state,
    tier_a_current,
)
from cds_service.rules.base import Finding, RuleContext, SuggestedOrder

# Phenotypes that call for a reduced thiopurine dose or another drug (CPIC).
REDUCED_PHENOTYPES = ("intermediate", "poor", "low activity")

CYTOPENIA_RULES = (
    "FEBRILE_NEUTROPENIA",
    "NEUTROPENIA_SEVERE",
    "NEUTROPENIA_MODERATE",
    "DRUG_CYTOPENIA_DOSE_REVIEW",
    "LYMPHOPENIA_PROFOUND",
    "REFRACTORY_LEUKOPENIA_REFERRAL",
    "LEUKOPENIA_MONITOR",
)


def mg_per_kg_line(
    record: PatientRecord, exposure: DrugExposure, limit: float | None, weight_stale_days: float
) -> str | None:
    """Dose per kilogram (clinical rules §2.5), or why it cannot be computed."""
    dose = exposure.latest_dose
    name = exposure.ingredient.display
    if dose is None or dose.mg_per_day is None:
        return f"{name} dose per kg not computed: {dose.description if dose else 'no dose'}."
    if record.weight is None:
        return f"{name} {dose.mg_per_day:g} mg/day; no body weight on file, so mg/kg not computed."
    per_kg = dose.mg_per_day / record.weight.kg
    line = (
        f"{name} {dose.mg_per_day:g} mg/day ({dose.description}) = {per_kg:.2f} mg/kg/day "
        f"at {record.weight.kg:.1f} kg ({day(record.weight.time)})"
    )
    if days_between(record.weight.time, record.now) > weight_stale_days:
        line += "; the weight is more than 6 months old"
    if limit is not None and per_kg > limit:
        line += f"; above {limit:g} mg/kg/day, a named risk for leukopenia"
    return line + "."


def _dose_lines(ctx: RuleContext, drugs: list[DrugExposure]) -> list[str]:
    lines = []
    for exposure in drugs:
        if exposure.ingredient.id == "azathioprine":
            line = mg_per_kg_line(
                ctx.record,
                exposure,
                ctx.threshold("azathioprine_max_mg_per_kg_day"),
                ctx.threshold("weight_stale_days"),
            )
        elif exposure.latest_dose and exposure.latest_dose.mg_per_day is not None:
            line = (
                f"{exposure.ingredient.display} {exposure.latest_dose.mg_per_day:g} mg/day "
                f"({exposure.latest_dose.description})."
            )
        else:
            line = None
        if line:
            lines.append(line)
    return lines


def _stable_for(ctx: RuleContext, days: float) -> bool:
    """Every WBC over at least `days` before the latest stayed above the dose-review limit."""
    wbcs = ctx.record.series("wbc")
    if len(wbcs) < 2:
        return False
    latest = wbcs[0]
    span = [c for c in wbcs if c.time >= latest.time - timedelta(days=days * 2)]
    oldest = span[-1]
    return days_between(oldest.time, latest.time) >= days and all(
        c.value >= ctx.threshold("dose_review_wbc") for c in span
    )


def drug_cytopenia_dose_review(ctx: RuleContext) -> Finding | None:
    """A current tier A drug with counts at the dose-review warning threshold (WBC < 3.5
    [setting, BSR/BHPR 2017], ANC < 1.5 (< 1.3 on mycophenolate, CellCept label), ALC < 0.5,
    or a fall >= 30% from the 6-month median to below the lab's lower limit, methotrexate
    label) -> warning; a dangerous combination (thiopurine + allopurinol/febuxostat,
    methotrexate + trimethoprim) -> warning; WBC 3.5 to < 4.0 (or < LLN) with ANC >= 1.5 -> info.

    Choices where the spec is silent: the info variant also fires when there are not yet 3
    months of counts to call the leukopenia stable (the card says so and asks for a repeat CBC:
    missing history is not reassurance); an unknown ANC does not block the info variant.
    """
    k = ctx.knowledge
    drugs = tier_a_current(ctx.record)
    if not drugs:
        return None
    ingredients = [e.ingredient for e in drugs]
    reasons = dose_review_reasons(ctx.record, k, ingredients)
    combinations = dangerous_combinations(ctx.record, k)
    state = neutrophil_state(ctx.record, k, include_preliminary=False)
    names = ", ".join(e.describe() for e in drugs)
    evidence = [f"Current marrow-toxic drugs: {names}"]
    evidence += count_evidence(ctx.record, k, state)
    if ctx.record.duffy_null:
        evidence.append(
            "The patient is documented as Duffy-null (Duffy-null associated "
            "neutrophil count: reference ANC 1.21-5.39, WBC 3.00-9.66 x10^9/L)."
        )
    evidence += _dose_lines(ctx, drugs)
    advice = [e.ingredient.dose_review_advice for e in drugs if e.ingredient.dose_review_advice]
    common = [
        # Expert summary, no citation: EULAR 2023 does not make this claim (issue 11 point 11).
        "Consider the drug before blaming lupus activity.",
        "Keep hydroxychloroquine: it is not a cause to stop for lupus leukopenia.",
    ]
    if reasons or combinations:
        evidence += [f"Dose-review criterion met: {r}" for r in reasons]
        evidence += [
            f"Dangerous combination: {drug} with {partner}" for drug, partner, _ in combinations
        ]
        first_drug = drugs[0].ingredient.display
        why = reasons[0] if reasons else f"{combinations[0][0]} with {combinations[0][1]}"
        return Finding(
            rule="DRUG_CYTOPENIA_DOSE_REVIEW",
            indicator="warning",
            summary=f"Review {first_drug} dose: {why}.",
            evidence=evidence,
            recommendations=advice
            + [advice_text for _, _, advice_text in combinations]
            + common
            + ["Repeat CBC with differential to confirm and follow the trend."],
            sources=_drug_sources(ingredients)
            + ["bsr_dmard_2017"]
            + _partner_sources(k, combinations)
            + (["merz_duffy_2023", "hibbs_duffy_2025"] if ctx.record.duffy_null else []),
            orders=_orders_for(ctx, ingredients),
            override_reasons=[
                "already-addressed",
                "counts-reviewed",
                "benefit-outweighs-risk",
                "duffy-null",
            ],
        )
    if state.wbc is None or not is_low_wbc(state.wbc, k):
        return None
    if state.anc is not None and state.anc.value < ctx.threshold("dose_review_anc"):
        return None
    stable = _stable_for(ctx, ctx.threshold("stable_days"))
    evidence.append(
        "Stable for at least 3 months."
        if stable
        else "Not yet known to be stable for 3 months: repeat the CBC in 2-4 weeks."
    )
    return Finding(
        rule="DRUG_CYTOPENIA_DOSE_REVIEW",
        indicator="info",
        summary=f"Mild leukopenia on {drugs[0].ingredient.display} (WBC "
        f"{fmt(state.wbc.value)} x10^9/L): keep monitoring.",
        evidence=evidence,
        recommendations=[
            "Continue monitoring at the label's interval; review the dose if the "
            "WBC falls below 3.5 x10^9/L or the ANC below 1.5 x10^9/L.",
            *common,
        ],
        sources=_drug_sources(ingredients) + ["bsr_dmard_2017"],
        orders=[SuggestedOrder("cbc", "routine", "Order CBC with differential")],
    )


def _partner_sources(k: Knowledge, combinations: list[tuple[str, str, str]]) -> list[str]:
    """The interacting drug's own label for each dangerous combination (allopurinol,
    febuxostat, co-trimoxazole): the card cites the label that makes the claim."""
    labels = (k.ingredients[partner].label for _, partner, _ in combinations)
    return list(dict.fromkeys(label for label in labels if label))


def _drug_sources(ingredients: list[Ingredient]) -> list[str]:
    keys: list[str] = []
    for ingredient in ingredients:
        if ingredient.label and ingredient.label not in keys:
            keys.append(ingredient.label)
    return keys


def _orders_for(ctx: RuleContext, ingredients: list[Ingredient]) -> list[SuggestedOrder]:
    orders = [SuggestedOrder("cbc", "urgent", "Order CBC with differential", recommended=True)]
    if any(i.thiopurine for i in ingredients) and not ctx.record.pharmacogenomics:
        orders.append(SuggestedOrder("tpmt_nudt15", "routine", "Order TPMT and NUDT15 testing"))
    return orders


def thiopurine_pgx(ctx: RuleContext) -> Finding | None:
    """Azathioprine or mercaptopurine (patient-view: started or dose-increased <= 90 days
    ago, or a cytopenia card fired) with no TPMT/NUDT15 result (info), an intermediate or
    poor phenotype or low activity (warning), or a bare activity number (info). CPIC."""
    thiopurines = [
        e for e in ctx.record.exposures.values() if e.current and e.ingredient.thiopurine
    ]
    relevant = [
        e
        for e in thiopurines
        if e.started_recently or e.dose_increased_recently or ctx.has_fired(*CYTOPENIA_RULES)
    ]
    if not relevant:
        return None
    return thiopurine_pgx_finding(
        ctx, [e.ingredient for e in relevant], ", ".join(e.describe() for e in relevant)
    )


def thiopurine_pgx_finding(
    ctx: RuleContext, ingredients: list[Ingredient], described: str
) -> Finding | None:
    """The THIOPURINE_PGX card for these thiopurines, shared with the order hooks."""
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
        return Finding(
            rule="THIOPURINE_PGX",
            indicator="warning",
            summary=f"{reduced[0].gene} {reduced[0].phenotype}: reduce the {name} dose per CPIC.",
            evidence=evidence,
            recommendations=recommendations,
            sources=["cpic_thiopurines", *_drug_sources(ingredients)],
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
            sources=["cpic_thiopurines", *_drug_sources(ingredients)],
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
        sources=["cpic_thiopurines", *_drug_sources(ingredients)],
        orders=[
            SuggestedOrder(
                "tpmt_nudt15", "routine", "Order TPMT and NUDT15 testing", recommended=True
            )
        ],
        override_reasons=["already-addressed", "benefit-outweighs-risk"],
    )
