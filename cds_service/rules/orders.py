"""Order-entry rules (order-select, order-sign): ORDER_MYELOTOXIC_LOW_COUNTS,
ORDER_NO_RECENT_CBC, GCSF_CAUTION, and THIOPURINE_PGX for draft orders.

They judge the drafts the hook evaluates (clinical spec §3 "Which draft orders the order rules
evaluate": the selections at order-select, every draft at order-sign) against the patient's
counts, and suggest actions on the order being written: delete it, update it to a reduced dose
where a label or guideline names one, or create the CBC, TPMT/NUDT15 or referral order.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.dosing import reduced_order
from cds_service.knowledge import Ingredient
from cds_service.record import DraftOrder, DrugExposure, MedicationRecord, PatientRecord
from cds_service.rules.assessments import (
    NeutrophilState,
    count_evidence,
    dangerous_combinations,
    dose_review_reasons,
    fmt,
    neutrophil_state,
    six_month_median,
)
from cds_service.rules.base import DraftOrderChange, Finding, RuleContext, SuggestedOrder
from cds_service.rules.drugs import (
    REDUCED_PHENOTYPES,
    mg_per_kg_line,
    thiopurine_pgx,
    thiopurine_pgx_finding,
)
from cds_service.rules.monitoring import is_low_count

ORDER_HOOKS = ("order-select", "order-sign")
# Azathioprine and mercaptopurine label: with allopurinol or febuxostat, one third to one
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
        dose = self.medication.dose
        shown = (
            f"{dose.mg_per_day:g} mg/day ({dose.description})"
            if dose.mg_per_day is not None
            else dose.description
        )
        return f"{self.medication.display}: draft order, {shown}"

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


@dataclass(frozen=True)
class _Combination:
    drafted: DraftDrug
    thiopurine_allopurinol: bool  # else methotrexate + trimethoprim
    text: str
    advice: str


def _combinations(ctx: RuleContext, drugs: list[DraftDrug]) -> list[_Combination]:
    """Dangerous combinations that an evaluated draft makes with a current drug or with
    another draft of the session (co-exposure, even an unselected one)."""
    record, k = ctx.record, ctx.knowledge
    co_exposure = [m.ingredient for d in record.draft_orders for m in d.medications]
    current = {e.ingredient.id for e in record.exposures.values() if e.current}
    found = []
    for drug, partner, advice in dangerous_combinations(record, k, co_exposure):
        if drug in current and partner in current:
            continue  # not this order's doing: DRUG_CYTOPENIA_DOSE_REVIEW on patient-view
        for drafted in drugs:
            if drafted.ingredient.id in (drug, partner):
                found.append(
                    _Combination(
                        drafted,
                        thiopurine_allopurinol=drafted.ingredient.thiopurine
                        or partner in ("allopurinol", "febuxostat"),
                        text=f"{drug} with {partner}",
                        advice=advice,
                    )
                )
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


def order_myelotoxic_low_counts(ctx: RuleContext) -> Finding | None:
    """An evaluated draft for a tier A drug, or for a drug making a dangerous combination with
    a current drug (or another draft), while the latest WBC/ANC/ALC (<= 30 days) meets the
    dose-review warning threshold (clinical spec §2.4, via `dose_review_reasons`, which also
    applies the Duffy-null rule). Critical if ANC < 0.5 or WBC < 1.0; info for a continuation
    at the same or lower dose with stable counts; else warning (new start, dose increase).

    Choices where the spec is silent: "stable" = not fallen >= 30% (the significant-drop
    fraction) from the 6-month median, and no earlier value means not stable; a draft whose
    dose cannot be compared with the current one is treated as a possible increase (warning);
    a dangerous combination alone, with counts above the threshold, gives no order card (the
    catalogue requires low counts); suggestions: cancel the draft with a CBC, reduce it where
    a label names a dose (thiopurine with allopurinol/febuxostat to 1/3; a dose increase back
    to the current dose), or keep it and repeat the CBC.
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
    if not reasons:
        return None
    state = neutrophil_state(record, k, include_preliminary=False)
    critical = (
        state.anc is not None and state.anc.value < ctx.threshold("severe_neutropenia_anc")
    ) or (state.wbc is not None and state.wbc.value < ctx.threshold("grade4_leukopenia_wbc"))
    courses = {d.ingredient.id: _course(record, d) for d in candidates}
    continuation = all(c == "same or lower dose" for c in courses.values())
    if critical:
        indicator = "critical"
    elif continuation and not combinations and _stable(record, state, ctx):
        indicator = "info"
    else:
        indicator = "warning"
    primary = candidates[0]
    evidence = [f"{d.describe()} ({courses[d.ingredient.id]})" for d in candidates]
    evidence += count_evidence(ctx.record, ctx.knowledge, state)
    evidence += [f"Dose-review criterion met: {r}" for r in reasons]
    evidence += [f"Dangerous combination: {c.text}" for c in combinations]
    if record.duffy_null:
        evidence.append(
            "The patient is documented as Duffy-null; the counts are below the Duffy-null "
            "limits (ANC 1.2, WBC 3.0 x10^9/L) or falling."
        )
    evidence += _dose_lines(ctx, candidates)
    if indicator == "info":
        evidence.append("Continuation at the same or a lower dose; counts stable.")
    recommendations = [
        "Confirm the counts and their trend before signing.",
        "Repeat CBC with differential.",
        "Consider a lower dose.",
    ]
    recommendations += [
        d.ingredient.dose_review_advice for d in candidates if d.ingredient.dose_review_advice
    ]
    recommendations += list(dict.fromkeys(c.advice for c in combinations))
    summary = {
        "critical": f"{primary.ingredient.display} ordered with {reasons[0]}: "
        "do not sign before review.",
        "warning": f"{primary.ingredient.display} ordered with low counts ({reasons[0]}): "
        "confirm before signing.",
        "info": f"{primary.ingredient.display} continued with stable low counts "
        f"({reasons[0]}): keep monitoring.",
    }[indicator]
    changes, orders = _myelotoxic_suggestions(indicator, primary, courses, combinations, record)
    sources = [c for c in (primary.ingredient.label,) if c] + ["bsr_dmard_2017", "eular_sle_2023"]
    return Finding(
        rule="ORDER_MYELOTOXIC_LOW_COUNTS",
        indicator=indicator,
        summary=summary,
        evidence=evidence,
        recommendations=recommendations,
        sources=sources,
        orders=orders,
        draft_changes=changes,
        override_reasons=[
            "counts-reviewed",
            "benefit-outweighs-risk",
            "duffy-null",
            "already-addressed",
        ],
    )


def _myelotoxic_suggestions(
    indicator: str,
    primary: DraftDrug,
    courses: dict[str, str],
    combinations: list[_Combination],
    record: PatientRecord,
) -> tuple[list[DraftOrderChange], list[SuggestedOrder]]:
    """Alternatives on the draft (at most one is recommended): cancel, reduce, or keep and
    repeat the CBC."""
    priority = "stat" if indicator == "critical" else "urgent"
    if indicator == "info":
        return [], [_cbc("routine", "Order CBC with differential", recommended=True)]
    cbc = _cbc(priority, f"Order CBC with differential ({priority})")
    if primary.draft.resource_id is None:
        return [], [_cbc(priority, cbc.label, recommended=True)]
    own = [c for c in combinations if c.drafted is primary]
    reduce: DraftOrderChange | None = None
    if (
        indicator == "warning"
        and own
        and own[0].thiopurine_allopurinol
        and primary.ingredient.thiopurine
    ):
        reduce = _reduce(
            primary,
            COMBINATION_FRACTION,
            "label: 1/3-1/4 with allopurinol or febuxostat",
            cbc,
            True,
        )
    elif indicator == "warning" and courses[primary.ingredient.id] == "dose increase":
        current = record.exposure(primary.ingredient.id).latest_dose  # type: ignore[union-attr]
        ordered = primary.medication.dose.mg_per_day
        if current and current.mg_per_day and ordered:
            reduce = _reduce(primary, current.mg_per_day / ordered, "the current dose", cbc, True)
    avoid = indicator == "critical" or any(not c.thiopurine_allopurinol for c in own)
    changes = [_cancel(primary, cbc, recommended=avoid)]
    if reduce:
        changes.append(reduce)
    keep_recommended = not avoid and reduce is None
    keep = _cbc(
        priority, f"Keep the order and order CBC with differential ({priority})", keep_recommended
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
        sources=["eular_sle_2023", "bsr_dmard_2017"]
        + [d.ingredient.label for d in drugs[:1] if d.ingredient.label],
        orders=[
            _cbc("urgent" if lows else "routine", "Order CBC with differential", recommended=True)
        ],
        override_reasons=["already-addressed", "counts-reviewed"],
    )


# ---------------------------------------------------------------------------------------------
# GCSF_CAUTION


def gcsf_caution(ctx: RuleContext) -> Finding | None:
    """An evaluated draft G-CSF order (ATC L03AA*, RxNorm, or a name stem, biosimilar suffixes
    included: clinical spec §4) in SLE without febrile neutropenia: warning. Not routine in
    SLE (EULAR 2023: case reports only; flares and vasculitis reported); reserve for febrile
    neutropenia with high-risk features after hematology review (seed002). FEBRILE_NEUTROPENIA
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
    evidence = [d.describe() for d in drugs]
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
        summary=f"{primary.ingredient.display} in SLE: not routine; flares and vasculitis "
        "are reported. Review with hematology.",
        evidence=evidence,
        recommendations=[
            "G-CSF is not routine in SLE: the evidence is limited to case reports (EULAR), and "
            "flares and vasculitis after G-CSF are reported in SLE case series.",
            "Reserve it for febrile neutropenia with high-risk features or a high infection "
            "risk, after hematology review.",
            "If used: the lowest dose that keeps the ANC above 1.0 x10^9/L, and short courses.",
            "The 5-10 mcg/kg/day quoted for G-CSF is oncology dosing, not an SLE recommendation.",
        ],
        sources=["eular_sle_2023", "asco_idsa_fn_2018", "label_filgrastim"],
        orders=[referral],
        draft_changes=changes,
        override_reasons=["hematology-advised", "benefit-outweighs-risk", "already-addressed"],
        evidence_level="Evidence for G-CSF in SLE: case reports and case series.",
    )


# ---------------------------------------------------------------------------------------------
# THIOPURINE_PGX on order hooks


def order_thiopurine_pgx(ctx: RuleContext) -> Finding | None:
    """THIOPURINE_PGX for evaluated azathioprine or mercaptopurine drafts (clinical spec §3:
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
