"""Drug rule DRUG_CYTOPENIA_DOSE_REVIEW, and the drug lines (dose as prescribed, mg/kg/day, an
interacting drug) that the cards absorbing it carry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cds_service.days import day, days_between
from cds_service.knowledge import Combination, Ingredient, Knowledge
from cds_service.record import Count, DrugExposure, PatientRecord
from cds_service.record.dosing import DailyDose, sig3
from cds_service.rules.assessments import (
    count_evidence,
    dangerous_combinations,
    dose_review_reasons,
    duffy_null_could_explain,
    is_low_wbc,
    neutrophil_state,
    tier_a_current,
)
from cds_service.rules.base import (
    MAX_SUMMARY,
    Finding,
    RuleContext,
    SuggestedOrder,
    shown_limit,
    shown_period,
    upper_first,
)
from cds_service.rules.indication import (
    drug_names,
    indication,
    transplant_evidence,
    transplant_line,
)
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


def _lymphopenia_only(reasons: list[str]) -> bool:
    return bool(reasons) and all(r.startswith("ALC") for r in reasons)


def drug_cytopenia_dose_review(ctx: RuleContext) -> Finding | None:
    """A current tier A drug with counts at the dose-review warning threshold (WBC < 3.5
    [setting, BSR/BHPR 2017], ANC < 1.5 (< 1.3 on mycophenolate, CellCept label), ALC < 0.5,
    or a fall >= 30% from the 6-month median to below the lab's lower limit, methotrexate
    label) -> warning; a dangerous combination (thiopurine + allopurinol/febuxostat,
    methotrexate + trimethoprim) -> warning; WBC 3.5 to < 4.0 (or < LLN) with ANC >= 1.5 -> info.
    FEBRILE_NEUTROPENIA, NEUTROPENIA_SEVERE and REFRACTORY_LEUKOPENIA_REFERRAL suppress it and
    carry its drug lines (catalogue precedence, v3: one card per problem).

    Choices where the spec is silent: the info variant also fires when there are not yet 3
    months of counts to call the leukopenia stable (the card says so and asks for a repeat CBC:
    missing history is not reassurance); an unknown ANC does not block the info variant. When
    ALC < 0.5 is the only criterion the advice is the lymphopenia advice (BSR/BHPR 2017:
    withhold and discuss with the specialist team; infection screen), not the neutrophil
    advice of the drug's label. The summary names the drug to review and the decisive value.

    v4: an ALC < 0.5 on a current tier A drug is one card: this one absorbs
    LYMPHOPENIA_PROFOUND (its infection screen, glucocorticoid and PJP lines come along). With
    the ALC as the only criterion it is graded by episode (`lymphopenia_episode`, the service's
    own rule: BSR/BHPR 2017 gives the 0.5 action value, not episodes): warning for a new
    episode, a fall >= 30% or an ALC < 0.2, info when stable for 3 months; the evidence shows
    the last three ALCs. Who decides (`indication`): a transplant recipient's drugs are never
    withheld on the card's own advice ("discuss with the transplant team today before changing
    tacrolimus / mycophenolate mofetil"); BSR/BHPR "withhold and discuss" is for rheumatic
    indications; otherwise "inform the prescribing team". Duffy-null is no override reason for
    a lymphopenia card.

    Choices where v4 is silent: for a transplant recipient with a neutrophil criterion the
    label's advice (interrupt, reduce, stop) moves to the evidence, addressed to the transplant
    team, and every current tier A or B drug is named, as the card cannot tell which protects
    the graft; a stable lymphopenia (info) offers a routine CBC, not an urgent one.
    """
    k = ctx.knowledge
    drugs = tier_a_current(ctx.record)
    if not drugs:
        return None
    ingredients = [e.ingredient for e in drugs]
    reasons = dose_review_reasons(ctx.record, k, ingredients)
    combinations = dangerous_combinations(ctx.record, k)
    state = neutrophil_state(ctx.record, k, include_preliminary=False)
    evidence = count_evidence(ctx.record, k, state)
    evidence += duffy_null_evidence(ctx.record) + drug_lines(ctx, drugs)
    first_drug = drugs[0].ingredient.display
    if reasons or combinations:
        lymphopenia = (
            absorbed_lymphopenia(ctx, first_drug)
            if any(r.startswith("ALC") for r in reasons)
            else None
        )
        episode = lymphopenia.episode if lymphopenia is not None else None
        alc = lymphopenia.alc if lymphopenia is not None else None
        evidence += [f"Dose-review criterion met: {r}." for r in reasons if not r.startswith("ALC")]
        if lymphopenia is not None:
            evidence.append(lymphopenia.evidence)
        evidence += transplant_evidence(ctx.record)
        only_alc = episode is not None and _lymphopenia_only(reasons) and not combinations
        label_advice = [
            e.ingredient.dose_review_advice for e in drugs if e.ingredient.dose_review_advice
        ]
        advice: list[str] = []
        if not only_alc and indication(ctx.record) == "transplant":
            # v4: never "withhold" an anti-rejection drug on the card's own advice; the label's
            # advice is shown for the transplant team to weigh.
            advice.append(transplant_line(immunosuppressant_names(ctx)))
            evidence += [f"Label advice for the transplant team: {line}" for line in label_advice]
        elif not only_alc:
            advice += label_advice
        if lymphopenia is not None:
            advice += lymphopenia.advice
        advice += [advice_text for _, _, advice_text in combinations]
        severe = state.wbc is not None and state.wbc.value < ctx.threshold("severe_leukopenia_wbc")
        # After a severe cytopenia the urgent genotype line replaces the routine one (v4).
        advice += [] if severe else _pgx_advice(ctx, ingredients)
        advice += lupus_drug_advice(ctx.record)
        advice.append("Repeat CBC with differential to confirm and follow the trend.")
        why = reasons[0] if reasons else f"{combinations[0][0]} with {combinations[0][1]}"
        if only_alc and episode is not None and alc is not None:
            summary = _lymphopenia_summary(ctx, first_drug, alc.bound, episode)
        else:
            summary = f"Review {first_drug}: {why}."
            if len(summary) > MAX_SUMMARY:
                summary = f"Review {first_drug}: {why.split(' from ')[0]}."
        stable = only_alc and episode is not None and episode.stable
        finding = Finding(
            indicator="info" if stable else "warning",
            summary=summary,
            evidence=evidence,
            recommendations=list(dict.fromkeys(advice))[:5],
            sources=list(
                dict.fromkeys(
                    drug_sources(ingredients)
                    + [c.source for c in k.combinations if _combined(c, combinations)]
                    + _partner_sources(k, combinations)
                    + ["bsr_dmard_2017"]
                    + (lymphopenia.sources if lymphopenia is not None else [])
                    + hcq_source(advice)
                    + (["merz_duffy_2023", "hibbs_duffy_2025"] if ctx.record.duffy_null else [])
                )
            ),
            orders=(
                [SuggestedOrder("cbc", "routine", "Order CBC with differential")]
                if stable
                else _orders_for(ctx, ingredients)
            ),
            # v4 override reasons fit the card: Duffy-null status explains no lymphopenia, no
            # combination and no fall from the patient's own baseline.
            override_reasons=[
                "already-addressed",
                "counts-reviewed",
                "benefit-outweighs-risk",
                *(
                    ["duffy-null"]
                    if not combinations and duffy_null_could_explain(ctx.record, k, reasons)
                    else []
                ),
            ],
            decisive=f"ALC {alc.bound} x10^9/L" if only_alc and alc is not None else why,
        )
        return with_genotype_note(ctx, finding, severe)
    if state.wbc is None or not is_low_wbc(state.wbc, k):
        return None
    if state.anc is not None and state.anc.value < ctx.threshold("dose_review_anc"):
        return None
    stable_days = ctx.threshold("stable_days")
    period = shown_period(stable_days)
    evidence.append(
        f"Stable for at least {period}."
        if _stable_for(ctx, stable_days)
        else f"Not yet known to be stable for {period}: repeat the CBC in 2-4 weeks."
    )
    return Finding(
        indicator="info",
        summary=f"Mild leukopenia on {first_drug} (WBC {state.wbc.bound} x10^9/L): "
        "keep monitoring.",
        evidence=evidence,
        recommendations=[
            "Continue monitoring at the label's interval; review the dose if the WBC falls "
            f"below {shown_limit(ctx.threshold('dose_review_wbc'))} x10^9/L or the ANC below "
            f"{shown_limit(ctx.threshold('dose_review_anc'))} x10^9/L.",
            *lupus_drug_advice(ctx.record),
        ],
        sources=drug_sources(ingredients) + ["bsr_dmard_2017"],
        orders=[SuggestedOrder("cbc", "routine", "Order CBC with differential")],
        decisive=f"WBC {state.wbc.bound} x10^9/L",
    )


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


def _lymphopenia_summary(ctx: RuleContext, drug: str, alc: str, episode: LymphopeniaEpisode) -> str:
    """The summary quotes the ALC, the decisive criterion of a lymphopenia trigger (v4)."""
    if episode.stable:
        return f"Stable lymphopenia on {drug} (ALC {alc}, {episode.short}): keep monitoring."
    who = indication(ctx.record)
    if who == "transplant":
        return (
            f"Lymphopenia (ALC {alc}, {episode.short}) on {drug}: discuss with the transplant "
            "team today."
        )
    if who == "rheumatic":
        limit = f"{ctx.threshold('dose_review_alc'):g}"
        return f"Review {drug}: ALC {alc} < {limit} x10^9/L ({episode.short})."
    return f"Lymphopenia (ALC {alc}, {episode.short}) on {drug}: inform the prescribing team today."


def _combined(combination: Combination, found: list[tuple[str, str, str]]) -> bool:
    """True when `combination` is among the (drug, partner, advice) found: its label is cited."""
    return any(
        drug in combination.drugs and partner in combination.partners for drug, partner, _ in found
    )


def _partner_sources(k: Knowledge, combinations: list[tuple[str, str, str]]) -> list[str]:
    """The interacting drug's own label for each dangerous combination (allopurinol,
    febuxostat, co-trimoxazole): the card cites the label that makes the claim."""
    labels = (k.ingredients[partner].label for _, partner, _ in combinations)
    return list(dict.fromkeys(label for label in labels if label))


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


def _no_pgx_result(ctx: RuleContext, ingredients: list[Ingredient]) -> bool:
    """A thiopurine with no TPMT/NUDT15 result on file, the results having been read (a card
    never asks for a test when a result is on file, nor calls unread results absent: v4)."""
    return (
        any(i.thiopurine for i in ingredients)
        and not ctx.record.pharmacogenomics
        and not phenotypes_unreadable(ctx)
    )


def _pgx_advice(ctx: RuleContext, ingredients: list[Ingredient]) -> list[str]:
    if not _no_pgx_result(ctx, ingredients):
        return []
    return ["No TPMT/NUDT15 result on file: check TPMT and NUDT15 status."]


def _orders_for(ctx: RuleContext, ingredients: list[Ingredient]) -> list[SuggestedOrder]:
    orders = [SuggestedOrder("cbc", "urgent", "Order CBC with differential", recommended=True)]
    if _no_pgx_result(ctx, ingredients):
        orders.append(SuggestedOrder("tpmt_nudt15", "routine", "Order TPMT and NUDT15 testing"))
    return orders
