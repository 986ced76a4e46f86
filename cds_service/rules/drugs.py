"""The drug lines the cytopenia cards share (dose as prescribed, mg/kg/day, an interacting
drug, the lupus and genotype lines) and the lymphopenia content a card absorbs
(DRUG_CYTOPENIA_DOSE_REVIEW, rules/dose_review.py, and the cards that absorb it)."""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.days import day, days_between
from cds_service.knowledge import Ingredient
from cds_service.record import Count, DrugExposure, PatientRecord
from cds_service.record.dosing import DailyDose, sig3
from cds_service.rules.assessments import dangerous_combinations
from cds_service.rules.base import Finding, RuleContext, shown_period, upper_first
from cds_service.rules.indication import drug_names, indication, transplant_line
from cds_service.rules.lymphopenia import (
    LYMPHOPENIA_SOURCES,
    LymphopeniaEpisode,
    lymphopenia_advice,
    lymphopenia_episode,
)


def shown_dose(name: str, dose: DailyDose | None) -> str:
    """The dose as prescribed ("methotrexate 15 mg once weekly"), or why it is unknown."""
    if dose is None:
        return f"{name}: no dose stated"
    if dose.mg_per_day is None:
        return f"{name}: {dose.description}"
    return f"{name} {dose.description}"


def mg_per_kg_line(
    record: PatientRecord, exposure: DrugExposure, limit: float | None, weight_stale_days: float
) -> str:
    """The dose as prescribed (clinical rules §2.5 display) with, for a daily drug, the dose per
    kilogram ("azathioprine 100 mg (2 x 50 mg tablets) once daily = 1.47 mg/kg/day at 68 kg").
    mg/day stays internal; a weekly drug (methotrexate, or given weekly or less often) is never
    shown per day or per kg per day, and a dose in micrograms (G-CSF) is shown in mcg/kg/day."""
    dose = exposure.latest_dose
    name = exposure.ingredient.display
    methotrexate = exposure.ingredient.id == "methotrexate"
    line = shown_dose(name, dose)
    if dose is None or dose.mg_per_day is None:
        return line + "; dose per kg not computed."
    if dose.weekly or methotrexate:
        return line + "."
    if record.weight is None and "weights" in record.unreadable:
        unread = "; body weight could not be read, so mg/kg/day not computed."
        return line + (unread if limit else ".")
    if record.weight is None:
        # Said only where a per-kg limit exists (azathioprine): elsewhere it is noise.
        return line + ("; no body weight on file, so mg/kg/day not computed." if limit else ".")
    per_kg = dose.mg_per_day / record.weight.kg
    shown = f"{sig3(per_kg * 1000)} mcg/kg/day" if dose.microgram else f"{sig3(per_kg)} mg/kg/day"
    line += f" = {shown} at {sig3(record.weight.kg)} kg ({day(record.weight.time)})"
    if days_between(record.weight.time, record.now) > weight_stale_days:
        line += f"; the weight is more than {shown_period(weight_stale_days)} old"
    if limit is not None and per_kg > limit:
        line += f"; above {limit:g} mg/kg/day, a named risk for leukopenia"
    return line + "."


def per_kg_limit(ctx: RuleContext, ingredient: Ingredient) -> float | None:
    """The mg/kg/day above which a dose is a named leukopenia risk: azathioprine only (seed003)."""
    return (
        ctx.threshold("azathioprine_max_mg_per_kg_day") if ingredient.id == "azathioprine" else None
    )


def drug_lines(ctx: RuleContext, drugs: list[DrugExposure]) -> list[str]:
    """One evidence line per drug: the dose as prescribed, mg/kg/day for a daily drug (with the
    azathioprine limit of 2 mg/kg/day, seed003), and a dangerous combination partner if any.
    The critical and refractory cards carry these lines when they absorb the dose-review card
    (clinical rules §3 precedence v3)."""
    partners: dict[str, list[str]] = {}
    for drug, partner, _ in dangerous_combinations(ctx.record, ctx.knowledge):
        partners.setdefault(drug, []).append(partner)
    lines = []
    for exposure in drugs:
        limit = per_kg_limit(ctx, exposure.ingredient)
        if exposure.current:
            line = mg_per_kg_line(ctx.record, exposure, limit, ctx.threshold("weight_stale_days"))
        else:
            line = exposure.describe() + "."
        if line and exposure.ingredient.id in partners:
            line = line.rstrip(".") + f"; taken with {', '.join(partners[exposure.ingredient.id])}."
        if line:
            lines.append(upper_first(line))
    return lines


def lupus_drug_advice(record: PatientRecord) -> list[str]:
    """Advice that fits only a lupus patient (clinical rules §3 wording v3)."""
    if record.lupus is None:
        return []
    lines = ["In lupus, consider the drug before blaming disease activity."]
    if record.takes("hydroxychloroquine"):
        lines.append("Keep hydroxychloroquine: lupus leukopenia is no reason to stop it.")
    return lines


def hcq_source(recommendations: list[str]) -> list[str]:
    """EULAR 2023 is cited only for what it says: hydroxychloroquine for every lupus patient,
    so only on a card that tells the clinician to keep it."""
    keeps = any(line.startswith("Keep hydroxychloroquine") for line in recommendations)
    return ["eular_sle_2023"] if keeps else []


def own_drugs_first(ctx: RuleContext) -> str:
    """ "Review drugs that can lower neutrophils", naming the patient's own current drugs first
    (v3 wording), then the usual other causes (clinical rules §4 "consider" list).

    Choice where the spec is silent: hydroxychloroquine is not named here (it is never
    suggested for stopping outside the critical cards, §1.6); glucocorticoids are not named
    (they raise the neutrophil count)."""
    own = [
        e.ingredient.display
        for e in ctx.record.exposures.values()
        if e.current_or_recent
        and (e.ingredient.is_immunosuppressant or e.ingredient.role == "interacting")
    ]
    others = ", ".join(ctx.knowledge.also_consider)
    if own:
        return (
            f"Review drugs that can lower neutrophils: {', '.join(own)}; also ask about {others}."
        )
    return f"Review drugs that can lower neutrophils ({others}): none is on the current list."


def immunosuppressant_names(ctx: RuleContext) -> list[str]:
    """The patient's current tier A and tier B drugs: for a transplant recipient each may be
    an anti-rejection drug (the card cannot tell which)."""
    return [
        e.ingredient.display
        for e in ctx.record.exposures.values()
        if e.current and e.ingredient.is_immunosuppressant
    ]


def duffy_null_evidence(record: PatientRecord) -> list[str]:
    if not record.duffy_null:
        return []
    return [
        "Documented Duffy-null (Duffy-null associated neutrophil count: reference ANC "
        "1.21-5.39, WBC 3.00-9.66 x10^9/L)."
    ]


@dataclass(frozen=True)
class AbsorbedLymphopenia:
    """LYMPHOPENIA_PROFOUND's content on a current tier A drug, carried by the card that
    absorbs it (v4: DRUG_CYTOPENIA_DOSE_REVIEW, or NEUTROPENIA_MODERATE when that absorbs the
    dose review): the episode grading with the last three ALCs, who decides, the infection
    screen, glucocorticoid and PJP lines."""

    alc: Count
    episode: LymphopeniaEpisode
    evidence: str
    advice: list[str]
    sources: list[str]


def absorbed_lymphopenia(ctx: RuleContext, drug: str) -> AbsorbedLymphopenia | None:
    """The lymphopenia content when the current ALC is below the dose-review value (0.5)."""
    alc = ctx.record.latest("alc", max_age_days=ctx.threshold("current_days"))
    limit = ctx.threshold("dose_review_alc")
    if alc is None or alc.value >= limit:
        return None
    episode = lymphopenia_episode(ctx, alc)
    return AbsorbedLymphopenia(
        alc=alc,
        episode=episode,
        evidence=(
            f"Dose-review criterion met: ALC {alc.bound} < {limit:g} x10^9/L, {episode.why}; "
            f"last ALCs: {episode.last_three}."
        ),
        advice=[
            _lymphopenia_team_line(ctx, drug, episode),
            *lymphopenia_advice(ctx, brief=True),
        ],
        sources=list(LYMPHOPENIA_SOURCES),
    )


def _lymphopenia_team_line(ctx: RuleContext, drug: str, episode: LymphopeniaEpisode) -> str:
    """Who decides about the drug for an ALC < 0.5 (clinical rules §3 wording v4): the
    transplant team (never "withhold" an anti-rejection drug on the card's own advice), the
    specialist team with BSR/BHPR 2017's "withhold and discuss" for a rheumatic indication, or
    the prescribing team when the indication is unknown."""
    limit = f"{ctx.threshold('dose_review_alc'):g}"
    who = indication(ctx.record)
    if who == "transplant":
        names = immunosuppressant_names(ctx)
        if episode.stable:
            return (
                "Known, stable lymphopenia: the transplant team reviews it at the next planned "
                f"visit; do not change {drug_names(names)} on this card's advice."
            )
        return transplant_line(names)
    if who == "rheumatic":
        if episode.stable:
            return (
                f"Known, stable lymphopenia: review {drug} with the specialist team at the next "
                f"planned visit (BSR/BHPR 2017 action value {limit} x10^9/L)."
            )
        return (
            f"ALC < {limit} x10^9/L: withhold {drug} and discuss with the specialist team "
            "(BSR/BHPR 2017)."
        )
    if episode.stable:
        return "Known, stable lymphopenia: make sure the prescribing team knows of it."
    return f"Inform the prescribing team today: they decide whether to change {drug}."


def drug_sources(ingredients: list[Ingredient]) -> list[str]:
    return list(dict.fromkeys(i.label for i in ingredients if i.label))


def phenotypes_unreadable(ctx: RuleContext) -> bool:
    """Results that could not be read are not absent results (clinical rules §1.2 v4): the
    phenotype results failed or were cut short (record/missing.py kinds)."""
    return "phenotypes" in ctx.record.unreadable or "phenotypes" in ctx.record.unavailable


def with_genotype_note(ctx: RuleContext, finding: Finding, severe: bool = True) -> Finding:
    """The cytopenia card's one line about the urgent genotype (v4), when a thiopurine is
    current or recent, no TPMT/NUDT15 result is on file (and the results could be read) and
    the cytopenia is severe."""
    thiopurines = [
        e.ingredient.display
        for e in ctx.record.exposures.values()
        if e.ingredient.thiopurine and e.current_or_recent
    ]
    if not severe or not thiopurines or ctx.record.pharmacogenomics:
        return finding
    if phenotypes_unreadable(ctx):
        return finding
    line = (
        f"No TPMT/NUDT15 result on file: genotype TPMT and NUDT15 urgently ({thiopurines[0]}: "
        "severe cytopenia on a thiopurine)."
    )
    if len(finding.recommendations) < 5:
        finding.recommendations.append(line)
    else:
        finding.evidence.append(line)
    return finding
