"""DRUG_CYTOPENIA_DOSE_REVIEW: a current tier A drug whose counts meet a dose-review criterion
or that makes a dangerous combination (warning), or a mild leukopenia on it (info). The rule
assesses (`DoseReview`, `MildLeukopenia`), then words the card; the drug lines it shares with
the cards that absorb it live in rules/drugs.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cds_service.days import days_between
from cds_service.knowledge import Combination, Ingredient, Knowledge
from cds_service.record import Count, DrugExposure
from cds_service.rules.assessments import (
    count_evidence,
    dangerous_combinations,
    dose_review_reasons,
    duffy_null_could_explain,
    is_low_wbc,
    tier_a_current,
)
from cds_service.rules.base import (
    MAX_SUMMARY,
    Finding,
    RuleContext,
    SuggestedOrder,
    shown_limit,
    shown_period,
)
from cds_service.rules.drugs import (
    AbsorbedLymphopenia,
    absorbed_lymphopenia,
    drug_lines,
    drug_sources,
    duffy_null_evidence,
    hcq_source,
    immunosuppressant_names,
    lupus_drug_advice,
    phenotypes_unreadable,
    with_genotype_note,
)
from cds_service.rules.indication import indication, transplant_evidence, transplant_line
from cds_service.rules.judgements import NeutrophilState
from cds_service.rules.lymphopenia import LymphopeniaEpisode


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
    drugs = tier_a_current(ctx.record)
    if not drugs:
        return None
    review = assess_dose_review(ctx, drugs)
    if review is not None:
        return with_genotype_note(ctx, _dose_review_finding(ctx, review), review.severe)
    mild = assess_mild_leukopenia(ctx, drugs)
    return _mild_leukopenia_finding(ctx, mild) if mild is not None else None


Combinations = tuple[tuple[str, str, str], ...]  # (drug, partner, advice)


@dataclass(frozen=True)
class DoseReview:
    """The dose-review warning (or, for a stable lymphopenia, info) on current tier A drugs:
    which criteria the counts meet, which dangerous combination, and how the card grades."""

    drugs: tuple[DrugExposure, ...]
    state: NeutrophilState
    reasons: tuple[str, ...]  # the criteria met, gravest first ("ANC 1.20 < 1.5 x10^9/L")
    combinations: Combinations
    lymphopenia: AbsorbedLymphopenia | None  # ALC < 0.5: LYMPHOPENIA_PROFOUND comes along
    only_alc: bool  # the ALC is the only criterion: lymphopenia advice, graded by episode
    severe: bool  # WBC < 2.0: the urgent genotype line replaces the routine one (v4)
    transplant: bool  # the transplant team decides (rules/indication.py)

    @property
    def stable(self) -> bool:
        """A known, stable lymphopenia alone: info, a routine CBC."""
        return self.only_alc and self.lymphopenia is not None and self.lymphopenia.episode.stable

    @property
    def why(self) -> str:
        """The decisive criterion, as the summary quotes it."""
        if self.reasons:
            return self.reasons[0]
        drug, partner, _ = self.combinations[0]
        return f"{drug} with {partner}"

    @property
    def first_drug(self) -> str:
        return self.drugs[0].ingredient.display

    @property
    def ingredients(self) -> list[Ingredient]:
        return [e.ingredient for e in self.drugs]


def assess_dose_review(ctx: RuleContext, drugs: list[DrugExposure]) -> DoseReview | None:
    """The counts meet a dose-review criterion on these drugs, or two current drugs make a
    dangerous combination; None otherwise."""
    k = ctx.knowledge
    reasons = dose_review_reasons(ctx, [e.ingredient for e in drugs])
    combinations = tuple(dangerous_combinations(ctx.record, k))
    if not reasons and not combinations:
        return None
    state = ctx.neutrophils
    lymphopenia = (
        absorbed_lymphopenia(ctx, drugs[0].ingredient.display)
        if any(r.startswith("ALC") for r in reasons)
        else None
    )
    return DoseReview(
        drugs=tuple(drugs),
        state=state,
        reasons=tuple(reasons),
        combinations=combinations,
        lymphopenia=lymphopenia,
        only_alc=lymphopenia is not None and _lymphopenia_only(reasons) and not combinations,
        severe=state.wbc is not None and state.wbc.value < ctx.threshold("severe_leukopenia_wbc"),
        transplant=indication(ctx.record) == "transplant",
    )


def _counts_and_drugs(
    ctx: RuleContext, state: NeutrophilState, drugs: list[DrugExposure]
) -> list[str]:
    """The evidence both variants open with: the counts, Duffy-null status, the drug lines."""
    evidence = count_evidence(ctx.record, ctx.knowledge, state)
    return evidence + duffy_null_evidence(ctx.record) + drug_lines(ctx, drugs)


def _label_advice(review: DoseReview) -> list[str]:
    return [
        e.ingredient.dose_review_advice for e in review.drugs if e.ingredient.dose_review_advice
    ]


def _dose_review_evidence(ctx: RuleContext, review: DoseReview) -> list[str]:
    evidence = _counts_and_drugs(ctx, review.state, list(review.drugs))
    evidence += [
        f"Dose-review criterion met: {r}." for r in review.reasons if not r.startswith("ALC")
    ]
    if review.lymphopenia is not None:
        evidence.append(review.lymphopenia.evidence)
    evidence += transplant_evidence(ctx.record)
    if review.transplant and not review.only_alc:
        # v4: the label's advice is shown for the transplant team to weigh, not followed.
        evidence += [f"Label advice for the transplant team: {a}" for a in _label_advice(review)]
    return evidence


def _dose_review_advice(ctx: RuleContext, review: DoseReview) -> list[str]:
    advice: list[str] = []
    if review.transplant and not review.only_alc:
        # v4: never "withhold" an anti-rejection drug on the card's own advice.
        advice.append(transplant_line(immunosuppressant_names(ctx)))
    elif not review.only_alc:
        advice += _label_advice(review)
    if review.lymphopenia is not None:
        advice += review.lymphopenia.advice
    advice += [advice_text for _, _, advice_text in review.combinations]
    # After a severe cytopenia the urgent genotype line replaces the routine one (v4).
    advice += [] if review.severe else _pgx_advice(ctx, review.ingredients)
    advice += lupus_drug_advice(ctx.record)
    advice.append("Repeat CBC with differential to confirm and follow the trend.")
    return list(dict.fromkeys(advice))[:5]


def _dose_review_summary(ctx: RuleContext, review: DoseReview) -> str:
    drug = review.first_drug
    if review.only_alc and review.lymphopenia is not None:
        lymphopenia = review.lymphopenia
        return _lymphopenia_summary(ctx, drug, lymphopenia.alc.bound, lymphopenia.episode)
    summary = f"Review {drug}: {review.why}."
    if len(summary) > MAX_SUMMARY:
        summary = f"Review {drug}: {review.why.split(' from ')[0]}."
    return summary


def _dose_review_sources(ctx: RuleContext, review: DoseReview, advice: list[str]) -> list[str]:
    k, found = ctx.knowledge, list(review.combinations)
    return list(
        dict.fromkeys(
            drug_sources(review.ingredients)
            + [c.source for c in k.combinations if _combined(c, found)]
            + _partner_sources(k, found)
            + ["bsr_dmard_2017"]
            + (review.lymphopenia.sources if review.lymphopenia is not None else [])
            + hcq_source(advice)
            + (["merz_duffy_2023", "hibbs_duffy_2025"] if ctx.record.duffy_null else [])
        )
    )


def _dose_review_finding(ctx: RuleContext, review: DoseReview) -> Finding:
    advice = _dose_review_advice(ctx, review)
    # v4 override reasons fit the card: Duffy-null status explains no lymphopenia, no
    # combination and no fall from the patient's own baseline.
    duffy_null = not review.combinations and duffy_null_could_explain(ctx, list(review.reasons))
    lymphopenia = review.lymphopenia
    return Finding(
        indicator="info" if review.stable else "warning",
        summary=_dose_review_summary(ctx, review),
        evidence=_dose_review_evidence(ctx, review),
        recommendations=advice,
        sources=_dose_review_sources(ctx, review, advice),
        orders=(
            [SuggestedOrder("cbc", "routine", "Order CBC with differential")]
            if review.stable
            else _orders_for(ctx, review.ingredients)
        ),
        override_reasons=[
            "already-addressed",
            "counts-reviewed",
            "benefit-outweighs-risk",
            *(["duffy-null"] if duffy_null else []),
        ],
        decisive=(
            f"ALC {lymphopenia.alc.bound} x10^9/L"
            if review.only_alc and lymphopenia is not None
            else review.why
        ),
    )


@dataclass(frozen=True)
class MildLeukopenia:
    """WBC below the leukopenia limit but above the dose-review one, ANC not low: info."""

    drugs: tuple[DrugExposure, ...]
    state: NeutrophilState
    wbc: Count
    stable: bool  # every WBC of at least `stable_days` stayed above the dose-review limit


def assess_mild_leukopenia(ctx: RuleContext, drugs: list[DrugExposure]) -> MildLeukopenia | None:
    """Choice where the spec is silent: an unknown ANC does not block it, and fewer than
    3 months of counts is "not yet known to be stable" (missing history is no reassurance)."""
    state = ctx.neutrophils
    if state.wbc is None or not is_low_wbc(state.wbc, ctx.knowledge):
        return None
    if state.anc is not None and state.anc.value < ctx.threshold("dose_review_anc"):
        return None
    stable = _stable_for(ctx, ctx.threshold("stable_days"))
    return MildLeukopenia(tuple(drugs), state, state.wbc, stable)


def _mild_leukopenia_finding(ctx: RuleContext, mild: MildLeukopenia) -> Finding:
    period = shown_period(ctx.threshold("stable_days"))
    evidence = _counts_and_drugs(ctx, mild.state, list(mild.drugs))
    evidence.append(
        f"Stable for at least {period}."
        if mild.stable
        else f"Not yet known to be stable for {period}: repeat the CBC in 2-4 weeks."
    )
    return Finding(
        indicator="info",
        summary=f"Mild leukopenia on {mild.drugs[0].ingredient.display} (WBC {mild.wbc.bound} "
        "x10^9/L): keep monitoring.",
        evidence=evidence,
        recommendations=[
            "Continue monitoring at the label's interval; review the dose if the WBC falls "
            f"below {shown_limit(ctx.threshold('dose_review_wbc'))} x10^9/L or the ANC below "
            f"{shown_limit(ctx.threshold('dose_review_anc'))} x10^9/L.",
            *lupus_drug_advice(ctx.record),
        ],
        sources=drug_sources([e.ingredient for e in mild.drugs]) + ["bsr_dmard_2017"],
        orders=[SuggestedOrder("cbc", "routine", "Order CBC with differential")],
        decisive=f"WBC {mild.wbc.bound} x10^9/L",
    )


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


def _lymphopenia_only(reasons: list[str]) -> bool:
    return bool(reasons) and all(r.startswith("ALC") for r in reasons)
