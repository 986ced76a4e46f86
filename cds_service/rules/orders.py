"""Order-entry rules (order-select, order-sign): ORDER_MYELOTOXIC_LOW_COUNTS,
ORDER_NO_RECENT_CBC, GCSF_CAUTION, and THIOPURINE_PGX for draft orders.

They judge the drafts the hook evaluates (clinical rules §3 "Which draft orders the order rules
evaluate": the selections at order-select, every draft at order-sign) against the patient's
counts, and suggest actions on the order being written: delete it, update it to a reduced dose
where a label or guideline names one, or create the CBC, TPMT/NUDT15 or referral order.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from cds_service.knowledge import Ingredient
from cds_service.protocol.hooks import ORDER_HOOKS
from cds_service.record import DraftOrder, DrugExposure, MedicationRecord, PatientRecord
from cds_service.record.dosing import reduced_order
from cds_service.rules.assessments import (
    NeutrophilState,
    count_evidence,
    dangerous_combinations,
    dose_review_reasons,
    fmt,
    is_mycophenolate,
    neutrophil_state,
    six_month_median,
)
from cds_service.rules.base import (
    DraftOrderChange,
    Finding,
    RuleContext,
    SuggestedOrder,
    upper_first,
)
from cds_service.rules.drugs import (
    REDUCED_PHENOTYPES,
    mg_per_kg_line,
    thiopurine_pgx,
    thiopurine_pgx_finding,
)
from cds_service.rules.monitoring import is_low_count

# Azathioprine and mercaptopurine label: with allopurinol, one third to one
# quarter of the usual dose; the suggestion takes the less drastic end.
COMBINATION_FRACTION = 1 / 3
# CPIC: intermediate metabolizer, 30-80% of the normal starting dose; half is inside that range
# for a single TPMT or NUDT15 result and a dose that can be given (one of two tablets).
INTERMEDIATE_FRACTION = 0.5
_STABLE_DROP = "dose_review_drop_fraction"


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


def _cbc(priority: str, label: str, recommended: bool = False) -> SuggestedOrder:
    return SuggestedOrder("cbc", priority, label, recommended)  # type: ignore[arg-type]


def _cancel(drug: DraftDrug, then: SuggestedOrder | None, recommended: bool) -> DraftOrderChange:
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


def _reduce(
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


# ---------------------------------------------------------------------------------------------
# ORDER_MYELOTOXIC_LOW_COUNTS


# How the interacting drugs are named on cards.
_SHOWN = {"trimethoprim": "trimethoprim (TMP-SMX)"}


def _shown(ingredient_id: str) -> str:
    return _SHOWN.get(ingredient_id, ingredient_id)


@dataclass(frozen=True)
class _Combination:
    drafted: DraftDrug
    drug: str  # the thiopurine or methotrexate
    partner: str  # allopurinol, febuxostat or trimethoprim
    source: str  # the label that describes the interaction

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
            how = (
                f"reduce {drug} to 1/3-1/4 of its usual dose ({drug} label), or choose a "
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
                f"{upper_first(partner)} with current {drug}: reduce {drug} to 1/3-1/4 (label) "
                "or use another urate-lowering drug."
            )
        if self.thiopurine_allopurinol:
            return (
                f"{upper_first(drug)} with {partner}: reduce {drug} to 1/3-1/4 of the dose (label)."
            )
        if self.drafted_is_partner:
            return (
                f"{upper_first(partner)} with current methotrexate: choose another antibiotic "
                "or PJP agent."
            )
        return f"Methotrexate with current {partner}: change the antibiotic or PJP agent first."


def _combinations(ctx: RuleContext, drugs: list[DraftDrug]) -> list[_Combination]:
    """Dangerous combinations that an evaluated draft makes with a current drug or with
    another draft of the session (co-exposure, even an unselected one)."""
    record, k = ctx.record, ctx.knowledge
    co_exposure = [m.ingredient for d in record.draft_orders for m in d.medications]
    current = {e.ingredient.id for e in record.exposures.values() if e.current}
    sources = {
        (drug, partner): c.source
        for c in k.combinations
        for drug in c.drugs
        for partner in c.partners
    }
    found = []
    for drug, partner, _ in dangerous_combinations(record, k, co_exposure):
        if drug in current and partner in current:
            continue  # not this order's doing: DRUG_CYTOPENIA_DOSE_REVIEW on patient-view
        for drafted in drugs:
            if drafted.ingredient.id in (drug, partner):
                found.append(_Combination(drafted, drug, partner, sources[(drug, partner)]))
    return found


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


def _course(record: PatientRecord, drug: DraftDrug) -> str:
    """new start | dose increase | same or lower dose | dose not comparable."""
    exposure = record.exposure(drug.ingredient.id)
    if exposure is None or not exposure.current:
        return "new start"
    current = exposure.latest_dose
    ordered = drug.medication.dose.mg_per_day
    if current is None or current.mg_per_day is None or ordered is None:
        return "dose not comparable"
    return "dose increase" if ordered > current.mg_per_day * 1.001 else "same or lower dose"


def _dose_lines(ctx: RuleContext, drugs: list[DraftDrug]) -> list[str]:
    lines = []
    for drug in drugs:
        limit = (
            ctx.threshold("azathioprine_max_mg_per_kg_day")
            if drug.ingredient.id == "azathioprine"
            else None
        )
        if drug.ingredient.id == "azathioprine" or drug.ingredient.thiopurine:
            line = mg_per_kg_line(
                ctx.record, drug.as_exposure(), limit, ctx.threshold("weight_stale_days")
            )
            if line:
                lines.append(line)
    return lines


_VERB = {"new start": "start", "dose increase": "increase"}


def _critical_summary(
    ctx: RuleContext, primary: DraftDrug, course: str, state: NeutrophilState
) -> tuple[str, str]:
    """(summary, label line) quoting the decisive value: the ANC when it is < 0.5 (the
    lowest-graded criterion), else the WBC < 1.0, and the drug's own label limit."""
    name = primary.ingredient.display
    verb = _VERB.get(course, "continue")
    if state.anc is not None and state.anc.value < ctx.threshold("severe_neutropenia_anc"):
        value = f"ANC {fmt(state.anc.value)}"
    else:
        value = f"WBC {fmt(state.wbc.value)}"  # type: ignore[union-attr]
    if is_mycophenolate(primary.ingredient):
        limit = ctx.threshold("dose_review_anc_mycophenolate")
        rule = f"while the ANC is < {limit:g} (label)"
        label = (
            f"CellCept label: interrupt or reduce the dose when the ANC is < {limit:g} x10^9/L, "
            f"so do not {verb} it now."
        )
    else:
        rule = "with severe neutropenia"
        label = primary.ingredient.dose_review_advice or (
            f"Do not {verb} {name} before the counts recover."
        )
    return f"{value}: do not {verb} {name} {rule}: cancel or defer.", label


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

    Choices where the spec is silent: "stable" = not fallen >= 30% (the significant-drop
    fraction) from the baseline (6-month median, or the earlier value), and no earlier value
    means not stable; a draft whose dose cannot be compared with the current one is treated as
    a possible increase (warning). "Defer" is an `update` of the draft to status `on-hold`
    with a stat CBC: the order is kept for later but cannot be acted on until the counts are
    reviewed. Cancelling an allopurinol draft is offered but not recommended (the alternative,
    reducing the current thiopurine, is a change to another order); cancelling a TMP-SMX or a
    febuxostat draft is recommended.
    """
    record, k = ctx.record, ctx.knowledge
    drugs = evaluated_drugs(record)
    combinations = _combinations(ctx, drugs)
    combined = {c.drafted.ingredient.id for c in combinations}
    candidates = [d for d in drugs if d.ingredient.is_tier_a or d.ingredient.id in combined]
    if not candidates:
        return None
    tier_a = [d.ingredient for d in candidates if d.ingredient.is_tier_a]
    partners = [
        e.ingredient for e in record.exposures.values() if e.current and e.ingredient.is_tier_a
    ]
    reasons = dose_review_reasons(record, k, tier_a or partners)
    if not reasons and not combinations:
        return None
    state = neutrophil_state(record, k, include_preliminary=False)
    critical = bool(reasons) and (
        (state.anc is not None and state.anc.value < ctx.threshold("severe_neutropenia_anc"))
        or (state.wbc is not None and state.wbc.value < ctx.threshold("grade4_leukopenia_wbc"))
    )
    courses = {d.ingredient.id: _course(record, d) for d in candidates}
    continuation = all(c == "same or lower dose" for c in courses.values())
    if critical:
        indicator = "critical"
    elif continuation and not combinations and _stable(record, state, ctx):
        indicator = "info"
    else:
        indicator = "warning"
    # The drug the card is about: a combination's drafted drug, else the first tier A draft.
    primary = combinations[0].drafted if combinations and not critical else candidates[0]
    evidence = [f"{d.describe()} ({courses[d.ingredient.id]})" for d in candidates]
    evidence += count_evidence(ctx.record, ctx.knowledge, state)
    evidence += [f"Dose-review criterion met: {r}." for r in reasons]
    evidence += [f"Dangerous combination: {c.text}." for c in combinations]
    if record.duffy_null and reasons:
        evidence.append(
            "Documented Duffy-null; the counts are below the Duffy-null limits (ANC 1.2, WBC "
            "3.0 x10^9/L) or falling."
        )
    evidence += _dose_lines(ctx, candidates)
    if indicator == "info":
        evidence.append("Continuation at the same or a lower dose; counts stable.")
    name = primary.ingredient.display
    if indicator == "critical":
        summary, label_line = _critical_summary(ctx, primary, courses[primary.ingredient.id], state)
        recommendations = [
            label_line,
            "Cancel the order, or defer it until a repeat CBC with differential shows recovery.",
            "Same-day review of the neutropenia; ask about fever now.",
        ]
    else:
        recommendations = [c.advice() for c in combinations]
        if reasons:
            recommendations += [
                "Confirm the counts and their trend before signing; repeat CBC with differential."
            ]
            recommendations += [
                d.ingredient.dose_review_advice
                for d in candidates
                if d.ingredient.dose_review_advice and d.ingredient.id not in combined
            ]
        if combinations:
            summary = combinations[0].summary()
        elif indicator == "info":
            summary = (
                f"{upper_first(name)} continued with stable low counts ({reasons[0]}): "
                "keep monitoring."
            )
        else:
            summary = (
                f"{upper_first(name)} ordered with {reasons[0]}: confirm the counts before signing."
            )
    changes, orders = _myelotoxic_suggestions(indicator, primary, courses, combinations, record)
    sources = [c.source for c in combinations] + [
        d.ingredient.label for d in candidates if d.ingredient.label
    ]
    sources = list(dict.fromkeys(sources)) + ["bsr_dmard_2017"]
    return Finding(
        rule="ORDER_MYELOTOXIC_LOW_COUNTS",
        indicator=indicator,
        summary=summary,
        evidence=evidence,
        recommendations=list(dict.fromkeys(recommendations))[:5],
        sources=sources,
        orders=orders,
        draft_changes=changes,
        override_reasons=[
            "counts-reviewed",
            "benefit-outweighs-risk",
            "duffy-null",
            "already-addressed",
        ],
        decisive=reasons[0] if reasons else combinations[0].text,
        about_counts=bool(reasons),
    )


def _defer(drug: DraftDrug, then: SuggestedOrder) -> DraftOrderChange:
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


def _myelotoxic_suggestions(
    indicator: str,
    primary: DraftDrug,
    courses: dict[str, str],
    combinations: list[_Combination],
    record: PatientRecord,
) -> tuple[list[DraftOrderChange], list[SuggestedOrder]]:
    """Alternatives on the draft (at most one is recommended). Critical: cancel (+ stat CBC) or
    defer, never keep. Combination: update the thiopurine draft to 1/3, or cancel the
    interacting draft. Low counts: cancel, reduce back to the current dose, or keep and repeat
    the CBC."""
    priority = "stat" if indicator == "critical" else "urgent"
    if indicator == "info":
        return [], [_cbc("routine", "Order CBC with differential", recommended=True)]
    cbc = _cbc(priority, f"Order CBC with differential ({priority})")
    if primary.draft.resource_id is None:
        return [], [_cbc(priority, cbc.label, recommended=True)]
    if indicator == "critical":
        return [_cancel(primary, cbc, recommended=True), _defer(primary, cbc)], []
    own = [c for c in combinations if c.drafted is primary]
    if own:
        combination = own[0]
        if combination.thiopurine_allopurinol and not combination.drafted_is_partner:
            reduce = _reduce(
                primary,
                COMBINATION_FRACTION,
                "label: 1/3-1/4 with allopurinol",
                cbc,
                True,
            )
            changes = [_cancel(primary, None, recommended=reduce is None)]
            return changes + ([reduce] if reduce else []), []
        # The interacting drug is the draft, methotrexate is started on top of TMP-SMX, or a
        # thiopurine on top of febuxostat (contraindicated: cancelling is recommended).
        recommended = not combination.thiopurine_allopurinol
        return [_cancel(primary, None, recommended=recommended)], []
    reduce: DraftOrderChange | None = None
    if courses[primary.ingredient.id] == "dose increase":
        current = record.exposure(primary.ingredient.id).latest_dose  # type: ignore[union-attr]
        ordered = primary.medication.dose.mg_per_day
        if current and current.mg_per_day and ordered:
            reduce = _reduce(primary, current.mg_per_day / ordered, "the current dose", cbc, True)
    changes = [_cancel(primary, cbc, recommended=False)]
    if reduce:
        changes.append(reduce)
    keep = _cbc(
        priority, f"Keep the order and order CBC with differential ({priority})", reduce is None
    )
    return changes, [keep]


# ---------------------------------------------------------------------------------------------
# ORDER_NO_RECENT_CBC


def order_no_recent_cbc(ctx: RuleContext) -> Finding | None:
    """An evaluated draft for a tier A drug and no qualifying (final, amended, corrected) WBC
    in the last 30 days: info, asking for a baseline CBC with differential; warning when the
    last known WBC, ANC or ALC of any age was low (the CBC_STALE limits), shown on the card.

    Choice where the spec is silent: "low" uses the same limits as CBC_STALE (WBC < 4.0 or the
    lab's LLN, ANC < 1.5, ALC < 0.5); a preliminary WBC does not count as recent.
    """
    record = ctx.record
    drugs = [d for d in evaluated_drugs(record) if d.ingredient.is_tier_a]
    if not drugs or record.latest("wbc", max_age_days=ctx.threshold("current_days")):
        return None
    lows = [
        latest
        for analyte in ("wbc", "anc", "alc")
        if (latest := record.latest(analyte)) is not None and is_low_count(latest, ctx)
    ]
    names = ", ".join(dict.fromkeys(d.ingredient.display for d in drugs))
    evidence = [d.describe() for d in drugs]
    latest_wbc = record.latest("wbc")
    if latest_wbc is None:
        evidence.append("No WBC result on file.")
    elif latest_wbc not in lows:
        evidence.append(f"Last WBC {latest_wbc.describe()}")
    evidence += [
        f"Last {c.analyte.upper()} was low ({fmt(c.value)} x10^9/L on {c.time:%Y-%m-%d}) "
        "and has not been repeated"
        for c in lows
    ]
    if lows:
        low = lows[0]
        summary = (
            f"Last {low.analyte.upper()} was low ({fmt(low.value)} x10^9/L, {low.time:%Y-%m-%d}):"
            f" CBC before signing {names}."
        )
    else:
        summary = f"No CBC in the last 30 days: baseline CBC with differential before {names}."
    return Finding(
        rule="ORDER_NO_RECENT_CBC",
        indicator="warning" if lows else "info",
        summary=summary,
        evidence=evidence,
        recommendations=[
            "Baseline CBC with differential before starting; then monitor at the label's "
            "interval (azathioprine: weekly in month 1, twice monthly in months 2-3, then "
            "monthly).",
        ],
        sources=[d.ingredient.label for d in drugs[:1] if d.ingredient.label] + ["bsr_dmard_2017"],
        orders=[
            _cbc("urgent" if lows else "routine", "Order CBC with differential", recommended=True)
        ],
        override_reasons=["already-addressed", "counts-reviewed"],
    )


# ---------------------------------------------------------------------------------------------
# GCSF_CAUTION


def gcsf_caution(ctx: RuleContext) -> Finding | None:
    """An evaluated draft G-CSF order (ATC L03AA*, RxNorm, or a name stem, biosimilar suffixes
    included: clinical rules §4) in SLE without febrile neutropenia: warning. Not routine in
    SLE (Carli et al. 2015: case reports and series only; flares and vasculitis reported, J
    Rheumatol 2006); reserve for febrile neutropenia with high-risk features after hematology
    review (ASCO growth-factor guideline 2015). FEBRILE_NEUTROPENIA
    suppresses it (precedence), and must run first.

    Choice where the spec is silent: SLE here is the §2.2 lupus diagnosis, suspected,
    drug-induced and unspecified lupus included; the suggestions are a hematology referral
    (recommended) or cancelling the draft.
    """
    record = ctx.record
    drugs = [d for d in evaluated_drugs(record) if d.ingredient.role == "gcsf"]
    if not drugs or record.lupus is None or ctx.has_fired("FEBRILE_NEUTROPENIA"):
        return None
    state = neutrophil_state(record, ctx.knowledge, include_preliminary=False)
    primary = drugs[0]
    # The G-CSF dose as prescribed, in mcg, with mcg/kg/day when a weight is on file (§2.5).
    evidence = [
        f"{d.medication.display}: draft order, "
        + mg_per_kg_line(record, d.as_exposure(), None, ctx.threshold("weight_stale_days"))
        for d in drugs
    ]
    evidence.append(f"Diagnosis: {record.lupus.describe()}")
    evidence += count_evidence(ctx.record, ctx.knowledge, state) or [
        "No WBC or ANC in the last 30 days."
    ]
    evidence.append("No febrile neutropenia found (no fever with ANC < 1.0 in the last 24 h).")
    referral = SuggestedOrder(
        "hematology_referral", "urgent", "Refer to hematology before G-CSF", recommended=True
    )
    changes = [_cancel(primary, None, recommended=False)] if primary.draft.resource_id else []
    return Finding(
        rule="GCSF_CAUTION",
        indicator="warning",
        summary=f"{upper_first(primary.ingredient.display)} in SLE{_count_quote(state)}: not "
        "routine; flares and vasculitis are reported. Review with hematology.",
        evidence=evidence,
        recommendations=[
            "G-CSF is not routine in SLE: the evidence is limited to case reports and series, "
            "and flares and vasculitis after G-CSF are reported in them.",
            "Reserve it for febrile neutropenia with high-risk features or a high infection "
            "risk, after hematology review.",
            "If used: the lowest dose that keeps the ANC above 1.0 x10^9/L, and short courses.",
            "The 5-10 mcg/kg/day quoted for G-CSF is oncology dosing, not an SLE recommendation.",
        ],
        sources=[
            "carli_sle_leukopenia_2015",
            "vasiliu_gcsf_sle_2006",
            "hellmich_gcsf_1999",
            "asco_gcsf_2015",
            "label_filgrastim",
        ],
        orders=[referral],
        draft_changes=changes,
        override_reasons=["hematology-advised", "benefit-outweighs-risk", "already-addressed"],
        evidence_level="Evidence for G-CSF in SLE: case reports and case series.",
    )


def _count_quote(state: NeutrophilState) -> str:
    """ " (ANC 0.80)" or " (WBC 2.40)": the count the G-CSF would be given for."""
    if state.anc is not None and not state.anc_unknown:
        return f" (ANC {fmt(state.anc.value)})"
    return f" (WBC {fmt(state.wbc.value)})" if state.wbc is not None else ""


# ---------------------------------------------------------------------------------------------
# THIOPURINE_PGX on order hooks


def order_thiopurine_pgx(ctx: RuleContext) -> Finding | None:
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
    finding = thiopurine_pgx_finding(ctx, ingredients, "; ".join(d.describe() for d in drugs))
    if finding is None:
        return None
    finding.evidence += _dose_lines(ctx, drugs)
    primary = drugs[0]
    phenotypes = {
        r.phenotype for r in ctx.record.pharmacogenomics if r.phenotype in REDUCED_PHENOTYPES
    }
    if finding.indicator == "warning" and primary.draft.resource_id:
        poor = "poor" in phenotypes
        changes = [_cancel(primary, None, recommended=poor)]
        # Only TPMT known: the NUDT15 test travels with the reduced dose (the card offers one
        # choice on the draft, so a separate order would exclude the reduction).
        nudt15 = next((o for o in finding.orders if o.kind == "tpmt_nudt15"), None)
        if not poor:
            reduce = _reduce(
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


def thiopurine_pgx_any_hook(ctx: RuleContext) -> Finding | None:
    """THIOPURINE_PGX: evaluated drafts on order hooks, current exposure on patient-view."""
    if ctx.hook in ORDER_HOOKS:
        return order_thiopurine_pgx(ctx)
    return thiopurine_pgx(ctx)
