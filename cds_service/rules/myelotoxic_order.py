"""ORDER_MYELOTOXIC_LOW_COUNTS (order-select, order-sign): a draft for a marrow-toxic (tier A)
drug judged against the patient's counts and the drafts' dangerous combinations.

Two steps: `assess_myelotoxic_order` decides (which drafts, their course, the dose-review
criteria met, the combinations, the acute neutropenia card it stands before, the tier); the
rule words that assessment and suggests actions on the draft being written: delete it, update
it to a reduced dose where a label or guideline names one, put it on hold, or order the CBC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cds_service.knowledge import ThresholdName
from cds_service.record import PatientRecord
from cds_service.rules.assessments import (
    count_evidence,
    dose_review_reasons,
    duffy_null_anc_limit,
    duffy_null_could_explain,
    is_mycophenolate,
    six_month_median,
)
from cds_service.rules.base import (
    MAX_SUMMARY,
    DraftOrderChange,
    Finding,
    Indicator,
    RuleContext,
    SuggestedOrder,
    shown_limit,
    upper_first,
)
from cds_service.rules.combinations import Combination, drafted_combinations
from cds_service.rules.drafts import (
    DraftDrug,
    cancel_draft,
    cbc_order,
    defer_draft,
    dose_lines,
    draft_course,
    evaluated_drugs,
    fraction_range,
    reduce_draft,
)
from cds_service.rules.judgements import NeutrophilState
from cds_service.rules.methotrexate import too_frequent

# Assess: the clinical decision, no card text.


@dataclass(frozen=True)
class MyelotoxicOrder:
    """What the order card decides: which drafts, what each does to the current course, which
    dose-review criteria and combinations they meet, the acute card they stand before, and the
    tier that follows (critical, info for a stable continuation, else warning)."""

    drafts: tuple[DraftDrug, ...]  # tier A drafts and the drafts of a combination
    courses: Mapping[str, str]  # ingredient id -> new start, dose increase, same or lower dose
    reasons: tuple[str, ...]  # the dose-review criteria met (§2.4, Duffy-null rule applied)
    combinations: tuple[Combination, ...]
    acute: Finding | None  # this answer's febrile or severe neutropenia card (v4)
    state: NeutrophilState  # final results only
    indicator: Indicator
    primary: DraftDrug  # the drug the card is about

    @property
    def combined(self) -> set[str]:
        """The drafted drugs of a combination: their advice is the combination's."""
        return {c.drafted.ingredient.id for c in self.combinations}


def assess_myelotoxic_order(ctx: RuleContext) -> MyelotoxicOrder | None:
    record = ctx.record
    drugs = evaluated_drugs(record)
    combinations = tuple(drafted_combinations(ctx, drugs))
    drafts = _judged_drafts(ctx, drugs, combinations)
    if not drafts:
        return None
    tier_a = [d.ingredient for d in drafts if d.ingredient.is_tier_a]
    # With only a drafted partner (allopurinol ...), the counts are judged for the current
    # tier A drugs.
    current = [e.ingredient for e in record.exposures.values() if e.current]
    judged = tier_a or [ingredient for ingredient in current if ingredient.is_tier_a]
    reasons = tuple(dose_review_reasons(ctx, judged))
    acute = _acute_neutropenia(ctx) if tier_a else None
    if not (reasons or combinations or acute):
        return None
    state = ctx.neutrophils
    courses = {d.ingredient.id: draft_course(record, d) for d in drafts}
    indicator = _order_tier(ctx, state, reasons, acute, courses, combinations)
    # The drug the card is about: a combination's drafted drug, else the first tier A draft.
    primary = (
        combinations[0].drafted
        if combinations and indicator != "critical"
        else next((d for d in drafts if d.ingredient.is_tier_a), drafts[0])
    )
    return MyelotoxicOrder(drafts, courses, reasons, combinations, acute, state, indicator, primary)


def _order_tier(
    ctx: RuleContext,
    state: NeutrophilState,
    reasons: tuple[str, ...],
    acute: Finding | None,
    courses: Mapping[str, str],
    combinations: tuple[Combination, ...],
) -> Indicator:
    """Critical beside an acute neutropenia card, or for a dose-review criterion with ANC < 0.5
    or WBC < 1.0; info for a continuation at the same or a lower dose with stable counts and no
    combination; else warning (new start, dose increase, dangerous combination)."""
    if acute is not None or (reasons and _severe_counts(ctx, state)):
        return "critical"
    continuation = all(course == "same or lower dose" for course in courses.values())
    if continuation and not combinations and _stable(ctx.record, state, ctx):
        return "info"
    return "warning"


def _judged_drafts(
    ctx: RuleContext, drugs: list[DraftDrug], combinations: tuple[Combination, ...]
) -> tuple[DraftDrug, ...]:
    """The tier A drafts and the drafts of a dangerous combination. v4: a daily methotrexate
    draft is the daily-dosing card's (update to once weekly, or cancel): "keep the order" here
    would contradict it. Its combinations are still judged."""
    combined = {c.drafted.ingredient.id for c in combinations}
    daily = ctx.has_fired("METHOTREXATE_DAILY_DOSING")
    return tuple(
        d
        for d in drugs
        if (d.ingredient.is_tier_a and not (daily and too_frequent(d.medication)))
        or d.ingredient.id in combined
    )


def _acute_neutropenia(ctx: RuleContext) -> Finding | None:
    """The FEBRILE_NEUTROPENIA or NEUTROPENIA_SEVERE card of this answer (they run first):
    with either, a tier A draft gets the critical order card whatever its dose (v4)."""
    return next(
        (f for f in ctx.fired if f.rule in ("FEBRILE_NEUTROPENIA", "NEUTROPENIA_SEVERE")), None
    )


def _severe_counts(ctx: RuleContext, state: NeutrophilState) -> bool:
    """ANC < 0.5 or WBC < 1.0 (grade 4): the order card is critical."""
    anc, wbc = state.anc, state.wbc
    return (anc is not None and anc.value < ctx.threshold("severe_neutropenia_anc")) or (
        wbc is not None and wbc.value < ctx.threshold("grade4_leukopenia_wbc")
    )


_STABLE_DROP: ThresholdName = "dose_review_drop_fraction"


def _stable(record: PatientRecord, state: NeutrophilState, ctx: RuleContext) -> bool:
    """Counts are stable when the latest WBC (and ANC, if known) has not fallen by the
    significant-drop fraction (30%) from its 6-month median. No history is not stability."""
    limit = ctx.threshold(_STABLE_DROP)
    for count in (state.wbc, state.anc):
        if count is None:
            continue
        baseline = six_month_median(record, count, ctx.knowledge)
        if baseline is None or baseline <= 0 or (baseline - count.value) / baseline >= limit:
            return False
    return state.wbc is not None


# Word: the card for the assessment.


def order_myelotoxic_low_counts(ctx: RuleContext) -> Finding | None:
    """An evaluated draft for a tier A drug while the latest WBC/ANC/ALC (<= 30 days) meets the
    dose-review warning threshold (clinical rules §2.4, via `dose_review_reasons`, which also
    applies the Duffy-null rule); or (v3) an evaluated draft that makes a dangerous combination
    with a current drug or another draft, whatever the counts. Critical if ANC < 0.5 or WBC <
    1.0; info for a continuation at the same or lower dose with stable counts; else warning
    (new start, dose increase, dangerous combination).

    Critical (v3): the summary quotes the decisive value and follows the drug's label ("ANC
    0.40: do not start mycophenolate mofetil while the ANC is < 1.3 (label): cancel or defer");
    the only suggestions are cancel (with a stat CBC) or defer, never keep.
    Combination (v3): the card says which drug to change and how, cites the label that
    describes the interaction, and offers the action on the draft: update a thiopurine draft
    to 1/3 of its dose (with allopurinol), or cancel a TMP-SMX, allopurinol or febuxostat
    draft. Thiopurine with febuxostat is a contraindication in the febuxostat label (where the
    contract speaks of a 1/3-1/4 reduction for both): no reduced dose is offered for it, and
    cancelling whichever of the two is drafted is recommended.

    v4: a methotrexate draft that METHOTREXATE_DAILY_DOSING flags is left to that card (one card
    per problem: its "update to once weekly" and a "keep the order" here would contradict each
    other); the order is judged again when the updated draft comes back.

    Choices where the spec is silent: "stable" = not fallen >= 30% (the significant-drop
    fraction) from the baseline (6-month median, or the earlier value), and no earlier value
    means not stable; a draft whose dose cannot be compared with the current one is treated as
    a possible increase (warning). "Defer" is an `update` of the draft to status `on-hold`
    with a stat CBC: the order is kept for later but cannot be acted on until the counts are
    reviewed. Cancelling an allopurinol draft is offered but not recommended (the alternative,
    reducing the current thiopurine, is a change to another order); cancelling a TMP-SMX or a
    febuxostat draft is recommended.
    """
    order = assess_myelotoxic_order(ctx)
    if order is None:
        return None
    if order.indicator == "critical":
        summary, recommendations = _critical_words(ctx, order)
    else:
        summary, recommendations = _review_words(order)
    changes, orders = _myelotoxic_suggestions(ctx.record, order)
    reasons, combinations = order.reasons, order.combinations
    return Finding(
        indicator=order.indicator,
        summary=summary,
        evidence=_myelotoxic_evidence(ctx, order),
        recommendations=list(dict.fromkeys(recommendations))[:5],
        sources=_myelotoxic_sources(order),
        orders=orders,
        draft_changes=changes,
        override_reasons=_myelotoxic_override_reasons(ctx, order),
        decisive=reasons[0] if reasons else combinations[0].text if combinations else "",
        about_counts=bool(reasons),
    )


def _myelotoxic_evidence(ctx: RuleContext, order: MyelotoxicOrder) -> list[str]:
    record = ctx.record
    lines = [f"{d.describe()} ({order.courses[d.ingredient.id]})" for d in order.drafts]
    lines += count_evidence(record, ctx.knowledge, order.state)
    lines += [f"Dose-review criterion met: {r}." for r in order.reasons]
    lines += [f"Dangerous combination: {c.text}." for c in order.combinations]
    if record.duffy_null and order.reasons:
        lines.append(_duffy_null_limits(ctx, order.drafts))
    lines += dose_lines(ctx, list(order.drafts))
    if order.indicator == "info":
        lines.append("Continuation at the same or a lower dose; counts stable.")
    if order.acute is not None:
        lines.insert(0, f"{_acute_problem(order.acute)} now: {order.acute.decisive}.")
    return lines


def _duffy_null_limits(ctx: RuleContext, drafts: tuple[DraftDrug, ...]) -> str:
    """The limits the reasons were judged by (dose_review_reasons with these drugs)."""
    mycophenolate = any(is_mycophenolate(d.ingredient) for d in drafts)
    anc = duffy_null_anc_limit(ctx.knowledge, mycophenolate)
    wbc = ctx.threshold("duffy_null_wbc")
    return (
        "Documented Duffy-null; the counts are below the Duffy-null limits (ANC "
        f"{shown_limit(anc)}, WBC {shown_limit(wbc, 1)} x10^9/L) or falling."
    )


def _critical_words(ctx: RuleContext, order: MyelotoxicOrder) -> tuple[str, list[str]]:
    """(summary, recommendations) of a critical card: the label's limit, cancel or defer,
    and the neutropenia first."""
    primary, acute = order.primary, order.acute
    course = order.courses[primary.ingredient.id]
    summary, label_line = _critical_summary(ctx, primary, course, order.state, acute)
    return summary, [
        label_line,
        "Cancel the order, or defer it until a repeat CBC with differential shows recovery.",
        f"Manage the {_acute_problem(acute).lower()} first (its own card)."
        if acute is not None
        else "Same-day review of the neutropenia; ask about fever now.",
    ]


_VERB = {"new start": "start", "dose increase": "increase"}


def _critical_summary(
    ctx: RuleContext,
    primary: DraftDrug,
    course: str,
    state: NeutrophilState,
    acute: Finding | None,
) -> tuple[str, str]:
    """(summary, label line) quoting the decisive value: with febrile or severe neutropenia now
    (v4), that card's decisive value ("Febrile neutropenia (ANC 0.60): do not start
    azathioprine now: cancel or defer"); else the ANC when it is < 0.5 (the lowest-graded
    criterion), else the WBC < 1.0, and the drug's own label limit."""
    name = primary.ingredient.display
    verb = _VERB.get(course, "continue")
    if is_mycophenolate(primary.ingredient):
        limit = ctx.threshold("dose_review_anc_mycophenolate")
        rule = f"while the ANC is < {limit:g} (label)"
        label = (
            f"CellCept label: interrupt or reduce the dose when the ANC is < {limit:g} x10^9/L, "
            f"so do not {verb} it now."
        )
    else:
        rule = "with severe neutropenia"
        # Not the drug's dose-review advice ("reduce the dose or withdraw temporarily"): beside
        # "cancel or defer" a line that says "reduce" reads as leave to sign a smaller dose.
        label = f"Do not {verb} {name} before the counts recover."
    if acute is not None:
        problem = _acute_problem(acute)
        decisive = acute.decisive.replace(" x10^9/L", "")
        summary = f"{problem} ({decisive}): do not {verb} {name} now: cancel or defer."
        if len(summary) > MAX_SUMMARY:
            summary = f"{problem}: do not {verb} {name} now: cancel or defer."
        return summary, label
    if state.anc is not None and state.anc.value < ctx.threshold("severe_neutropenia_anc"):
        value = f"ANC {state.anc.bound}"
    else:
        value = f"WBC {state.wbc.bound}"  # type: ignore[union-attr]
    return f"{value}: do not {verb} {name} {rule}: cancel or defer.", label


def _acute_problem(acute: Finding) -> str:
    """How the order card names the patient-state card it stands before."""
    if acute.rule == "NEUTROPENIA_SEVERE":
        return "Severe neutropenia"
    possible = acute.summary.lower().startswith("possible")
    return "Possible febrile neutropenia" if possible else "Febrile neutropenia"


def _review_words(order: MyelotoxicOrder) -> tuple[str, list[str]]:
    """(summary, recommendations) of a warning or info card: each combination's advice, then
    for low counts the confirmation and each other draft's dose-review advice."""
    recommendations = [c.advice() for c in order.combinations]
    if order.reasons:
        recommendations.append(
            "Confirm the counts and their trend before signing; repeat CBC with differential."
        )
        recommendations += [
            d.ingredient.dose_review_advice
            for d in order.drafts
            if d.ingredient.dose_review_advice and d.ingredient.id not in order.combined
        ]
    name = upper_first(order.primary.ingredient.display)
    if order.combinations:
        summary = order.combinations[0].summary()
    elif order.indicator == "info":
        summary = f"{name} continued with stable low counts ({order.reasons[0]}): keep monitoring."
    else:
        summary = f"{name} ordered with {order.reasons[0]}: confirm the counts before signing."
    return summary, recommendations


def _myelotoxic_sources(order: MyelotoxicOrder) -> list[str]:
    """The labels that describe each combination, then each drafted drug's label."""
    sources = [c.source for c in order.combinations]
    sources += [d.ingredient.label for d in order.drafts if d.ingredient.label]
    return list(dict.fromkeys(sources)) + ["bsr_dmard_2017"]


def _myelotoxic_override_reasons(ctx: RuleContext, order: MyelotoxicOrder) -> list[str]:
    """ "duffy-null" only for a low-count card Duffy-null status could explain (never a
    critical card or a combination)."""
    duffy_null = (
        order.indicator != "critical"
        and not order.combinations
        and duffy_null_could_explain(ctx, list(order.reasons))
    )
    return [
        "counts-reviewed",
        "benefit-outweighs-risk",
        *(["duffy-null"] if duffy_null else []),
        "already-addressed",
    ]


def _myelotoxic_suggestions(
    record: PatientRecord, order: MyelotoxicOrder
) -> tuple[list[DraftOrderChange], list[SuggestedOrder]]:
    """Alternatives on the draft (at most one is recommended). Critical: cancel (+ stat CBC) or
    defer, never keep. Combination: update the thiopurine draft to 1/3, or cancel the
    interacting draft. Low counts: cancel, reduce back to the current dose, or keep and repeat
    the CBC."""
    primary = order.primary
    priority = "stat" if order.indicator == "critical" else "urgent"
    if order.indicator == "info":
        return [], [cbc_order("routine", "Order CBC with differential", recommended=True)]
    cbc = cbc_order(priority, f"Order CBC with differential ({priority})")
    if primary.draft.resource_id is None:
        return [], [cbc_order(priority, cbc.label, recommended=True)]
    if order.indicator == "critical":
        return [cancel_draft(primary, cbc, recommended=True), defer_draft(primary, cbc)], []
    own = [c for c in order.combinations if c.drafted is primary]
    if own:
        return _combination_changes(primary, own[0], cbc), []
    reduce = _back_to_current_dose(record, primary, order.courses, cbc)
    changes = [cancel_draft(primary, cbc, recommended=False)] + ([reduce] if reduce else [])
    keep = cbc_order(
        priority, f"Keep the order and order CBC with differential ({priority})", reduce is None
    )
    return changes, [keep]


def _combination_changes(
    primary: DraftDrug, combination: Combination, cbc: SuggestedOrder
) -> list[DraftOrderChange]:
    """A thiopurine drafted on top of allopurinol: cancel, or (recommended) 1/3 of the dose
    (label). The interacting drug is the draft, methotrexate is started on top of TMP-SMX, or
    a thiopurine on top of febuxostat (contraindicated): cancel, recommended except for an
    allopurinol draft (the alternative, reducing the current thiopurine, is another order)."""
    if not combination.thiopurine_allopurinol or combination.drafted_is_partner:
        recommended = not combination.thiopurine_allopurinol
        return [cancel_draft(primary, None, recommended=recommended)]
    per_dose = primary.medication.dose.per_dose_mg
    reduced = None
    if per_dose and combination.dose_fraction:
        low, high = combination.dose_fraction  # the label's range; the less drastic end
        why = "label with allopurinol: " + fraction_range(primary, low, high)
        reduced = reduce_draft(primary, per_dose * high, why, cbc, True)
    cancel = cancel_draft(primary, None, recommended=reduced is None)
    return [cancel] + ([reduced] if reduced else [])


def _back_to_current_dose(
    record: PatientRecord, primary: DraftDrug, courses: Mapping[str, str], cbc: SuggestedOrder
) -> DraftOrderChange | None:
    """For a dose increase on low counts: the draft updated back to the current daily dose."""
    if courses[primary.ingredient.id] != "dose increase":
        return None
    current = record.exposure(primary.ingredient.id).latest_dose  # type: ignore[union-attr]
    ordered = primary.medication.dose
    if not (current and current.mg_per_day and ordered.mg_per_day and ordered.per_dose_mg):
        return None
    per_dose = ordered.per_dose_mg * current.mg_per_day / ordered.mg_per_day
    return reduce_draft(primary, per_dose, "the current dose", cbc, True)
