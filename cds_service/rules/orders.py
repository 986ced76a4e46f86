"""Order-entry rules (order-select, order-sign): ORDER_NO_RECENT_CBC and GCSF_CAUTION
(ORDER_MYELOTOXIC_LOW_COUNTS is in myelotoxic_order.py, THIOPURINE_PGX on drafts in
pharmacogenomics.py).

They judge the drafts the hook evaluates (clinical rules §3 "Which draft orders the order rules
evaluate": the selections at order-select, every draft at order-sign). Each rule assesses (a
frozen assessment of the drafts and counts, or None), then words the card.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.record import Count, PatientRecord
from cds_service.record.model import LupusDiagnosis
from cds_service.rules.assessments import count_evidence, fmt
from cds_service.rules.base import Finding, RuleContext, SuggestedOrder, shown_limit, upper_first
from cds_service.rules.drafts import DraftDrug, cancel_draft, cbc_order, evaluated_drugs
from cds_service.rules.drugs import mg_per_kg_line
from cds_service.rules.judgements import NeutrophilState
from cds_service.rules.monitoring import is_low_count, monitoring_schedules, no_wbc_on_file

# ---------------------------------------------------------------------------------------------
# ORDER_NO_RECENT_CBC


@dataclass(frozen=True)
class NoRecentCbc:
    drugs: tuple[DraftDrug, ...]  # the tier A drafts
    latest_wbc: Count | None  # of any age
    lows: tuple[Count, ...]  # the last WBC, ANC or ALC when low (the CBC_STALE limits)


def assess_no_recent_cbc(ctx: RuleContext) -> NoRecentCbc | None:
    record = ctx.record
    drugs = tuple(d for d in evaluated_drugs(record) if d.ingredient.is_tier_a)
    # A preliminary WBC does not count as recent.
    if not drugs or record.latest("wbc", max_age_days=ctx.threshold("current_days")):
        return None
    lows = tuple(
        latest
        for analyte in ("wbc", "anc", "alc")
        if (latest := record.latest(analyte)) is not None and is_low_count(latest, ctx)
    )
    return NoRecentCbc(drugs, record.latest("wbc"), lows)


def order_no_recent_cbc(ctx: RuleContext) -> Finding | None:
    """An evaluated draft for a tier A drug and no qualifying (final, amended, corrected) WBC
    in the last 30 days: info, asking for a baseline CBC with differential; warning when the
    last known WBC, ANC or ALC of any age was low (the CBC_STALE limits), shown on the card.

    v4: after the baseline CBC the card quotes the ordered drug's own label schedule
    (leflunomide: monthly for 6 months, then every 6-8 weeks ...), never another drug's.

    Choice where the spec is silent: "low" uses the same limits as CBC_STALE (WBC < 4.0 or the
    lab's LLN, ANC < 1.5, ALC < 0.5); a preliminary WBC does not count as recent.
    """
    overdue = assess_no_recent_cbc(ctx)
    if overdue is None:
        return None
    drugs = overdue.drugs
    # v4: the ordered drug's own label schedule, never another drug's.
    schedules = monitoring_schedules([d.ingredient for d in drugs])
    return Finding(
        indicator="warning" if overdue.lows else "info",
        summary=_no_recent_cbc_summary(ctx, overdue),
        evidence=_no_recent_cbc_evidence(ctx.record, overdue),
        recommendations=[
            "Baseline CBC with differential before starting, then as the drug's label says.",
            *(line for line, _ in schedules),
        ],
        sources=[source for _, source in schedules]
        or [d.ingredient.label for d in drugs[:1] if d.ingredient.label] + ["bsr_dmard_2017"],
        orders=[
            cbc_order(
                "urgent" if overdue.lows else "routine",
                "Order CBC with differential",
                recommended=True,
            )
        ],
        override_reasons=["already-addressed", "counts-reviewed"],
    )


def _no_recent_cbc_summary(ctx: RuleContext, overdue: NoRecentCbc) -> str:
    names = ", ".join(dict.fromkeys(d.ingredient.display for d in overdue.drugs))
    if overdue.lows:
        low = overdue.lows[0]
        return (
            f"Last {low.analyte.upper()} was low ({low.bound} x10^9/L, {low.time:%Y-%m-%d}):"
            f" CBC before signing {names}."
        )
    return (
        f"No CBC in the last {shown_limit(ctx.threshold('current_days'))} days: baseline CBC "
        f"with differential before {names}."
    )


def _no_recent_cbc_evidence(record: PatientRecord, overdue: NoRecentCbc) -> list[str]:
    lines = [d.describe() for d in overdue.drugs]
    if overdue.latest_wbc is None:
        lines.append(f"{upper_first(no_wbc_on_file(record))}.")
    elif overdue.latest_wbc not in overdue.lows:
        lines.append(f"Last WBC {overdue.latest_wbc.describe()}")
    return lines + [
        f"Last {c.analyte.upper()} was low ({c.bound} x10^9/L on {c.time:%Y-%m-%d}) "
        "and has not been repeated"
        for c in overdue.lows
    ]


# ---------------------------------------------------------------------------------------------
# GCSF_CAUTION


@dataclass(frozen=True)
class GcsfInSle:
    drafts: tuple[DraftDrug, ...]  # the G-CSF drafts
    lupus: LupusDiagnosis  # the §2.2 diagnosis
    state: NeutrophilState  # final results only: the count the G-CSF would be given for


def assess_gcsf_in_sle(ctx: RuleContext) -> GcsfInSle | None:
    record = ctx.record
    drafts = tuple(d for d in evaluated_drugs(record) if d.ingredient.role == "gcsf")
    if not drafts or record.lupus is None:
        return None
    state = ctx.neutrophils
    return GcsfInSle(drafts, record.lupus, state)


# Carli et al. 2015 (case reports and series only), the J Rheumatol 2006 and Hellmich 1999
# case reports (flares, vasculitis), the ASCO growth-factor guideline 2015 (high-risk features).
_GCSF_ADVICE = (
    "G-CSF is not routine in SLE: the evidence is limited to case reports and series, "
    "and flares and vasculitis after G-CSF are reported in them.",
    "Reserve it for febrile neutropenia with high-risk features or a high infection "
    "risk, after hematology review.",
    "If used: the lowest dose that keeps the ANC above 1.0 x10^9/L, and short courses.",
    "The 5-10 mcg/kg/day quoted for G-CSF is oncology dosing, not an SLE recommendation.",
)


def gcsf_caution(ctx: RuleContext) -> Finding | None:
    """An evaluated draft G-CSF order (ATC L03AA*, RxNorm, or a name stem, biosimilar suffixes
    included: clinical rules §4) in SLE without febrile neutropenia: warning. Not routine in
    SLE (Carli et al. 2015: case reports and series only; flares and vasculitis reported, J
    Rheumatol 2006); reserve for febrile neutropenia with high-risk features after hematology
    review (ASCO growth-factor guideline 2015). FEBRILE_NEUTROPENIA suppresses it (catalogue
    precedence).

    Choice where the spec is silent: SLE here is the §2.2 lupus diagnosis, suspected,
    drug-induced and unspecified lupus included; the suggestions are a hematology referral
    (recommended) or cancelling the draft.
    """
    gcsf = assess_gcsf_in_sle(ctx)
    if gcsf is None:
        return None
    primary = gcsf.drafts[0]
    referral = SuggestedOrder(
        "hematology_referral", "urgent", "Refer to hematology before G-CSF", recommended=True
    )
    changes = [cancel_draft(primary, None, recommended=False)] if primary.draft.resource_id else []
    return Finding(
        indicator="warning",
        summary=f"{upper_first(primary.ingredient.display)} in SLE{_count_quote(gcsf.state)}: "
        "not routine; flares and vasculitis are reported. Review with hematology.",
        evidence=_gcsf_evidence(ctx, gcsf),
        recommendations=list(_GCSF_ADVICE),
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


def _gcsf_evidence(ctx: RuleContext, gcsf: GcsfInSle) -> list[str]:
    """The G-CSF dose as prescribed, in mcg, with mcg/kg/day when a weight is on file (§2.5),
    the diagnosis, the counts, and why this is not febrile neutropenia."""
    record, stale_weight = ctx.record, ctx.threshold("weight_stale_days")
    lines = [
        f"{d.medication.display}: draft order, "
        + mg_per_kg_line(record, d.as_exposure(), None, stale_weight)
        for d in gcsf.drafts
    ]
    lines.append(f"Diagnosis: {gcsf.lupus.describe()}")
    lines += count_evidence(record, ctx.knowledge, gcsf.state) or [
        f"No WBC or ANC in the last {shown_limit(ctx.threshold('current_days'))} days."
    ]
    fn_anc = shown_limit(ctx.threshold("febrile_neutropenia_anc"), 1)
    hours = shown_limit(ctx.threshold("fever_window_hours"))
    lines.append(
        f"No febrile neutropenia found (no fever with ANC < {fn_anc} in the last {hours} h)."
    )
    return lines


def _count_quote(state: NeutrophilState) -> str:
    """ " (ANC 0.80)" or " (WBC 2.40)": the count the G-CSF would be given for."""
    if state.anc is not None and not state.anc_unknown:
        return f" (ANC {fmt(state.anc.value)})"
    return f" (WBC {fmt(state.wbc.value)})" if state.wbc is not None else ""
