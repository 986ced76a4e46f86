"""Neutropenia rules: FEBRILE_NEUTROPENIA, NEUTROPENIA_SEVERE, NEUTROPENIA_MODERATE."""

from __future__ import annotations

from cds_service.fhir_dates import day, days_between
from cds_service.record import LabFlag
from cds_service.rules.assessments import (
    NeutrophilState,
    critical_state,
    fever,
    fmt,
    neutrophil_state,
    tier_a_current,
    trend,
)
from cds_service.rules.base import Finding, RuleContext, SuggestedOrder


def _neutrophil_evidence(ctx: RuleContext, state: NeutrophilState) -> list[str]:
    lines = []
    if state.anc:
        lines.append(f"ANC {state.anc.describe()} ({state.anc.method})")
        earlier = trend(ctx.record, "anc")
        if earlier:
            lines.append(f"Earlier ANC: {earlier}")
    if state.wbc:
        lines.append(f"WBC {state.wbc.describe()}")
    if state.anc_unknown:
        lines.append("No differential from the latest draw: ANC unknown")
    if ctx.record.lupus:
        lines.append(f"Diagnosis: {ctx.record.lupus.describe()}")
    return lines


def _drugs_to_hold(ctx: RuleContext) -> list[str]:
    """Tier A drugs to hold pending review; hydroxychloroquine only as a drug to review when
    the neutropenia is not explained by lupus or another drug (clinical rules §1.6)."""
    lines = []
    held = tier_a_current(ctx.record) + [
        e for e in ctx.record.immunosuppressants() if e.recent and e.ingredient.is_tier_a
    ]
    if held:
        names = ", ".join(e.describe() for e in held)
        lines.append(f"Hold marrow-toxic drugs pending review: {names}.")
    recent_other = [e for e in ctx.record.immunosuppressants() if not e.ingredient.is_tier_a]
    if recent_other:
        late_onset = any(e.ingredient.id == "rituximab" for e in recent_other)
        lines.append(
            "Also consider: "
            + ", ".join(e.describe() for e in recent_other)
            + " (cytopenias reported"
            + ("; rituximab can cause late-onset neutropenia" if late_onset else "")
            + ")."
        )
    if (
        ctx.record.exposure("hydroxychloroquine")
        and ctx.record.exposure("hydroxychloroquine").current
    ):
        lines.append(
            "If the neutropenia is not explained by lupus or another drug, include "
            "hydroxychloroquine in the drug review (label: hematologic toxicity)."
        )
    return lines


def _anc_value(state: NeutrophilState) -> str:
    """The ANC as judged, with its comparator when the lab censored it ("<0.10")."""
    return f"{state.anc.comparator}{fmt(state.anc.value)}" if state.anc else "unknown"


def lab_flagged_anc(ctx: RuleContext) -> LabFlag | None:
    """The latest ANC the lab flags critically low (clinical rules §2.3): severe even when its
    value cannot be converted ("<0.1" with no unit), never only a data-quality note."""
    k = ctx.knowledge
    return ctx.record.critical_low_flag(
        "anc", bool(k.settings["preliminary_critical_results"]), k.threshold("current_days")
    )


def _hcq_label(ctx: RuleContext) -> list[str]:
    """The hydroxychloroquine label, cited when the card names it among the drugs to review."""
    hcq = ctx.record.exposure("hydroxychloroquine")
    return ["label_hydroxychloroquine"] if hcq and hcq.current else []


def _late_onset_sources(ctx: RuleContext) -> list[str]:
    """Cited when the card names rituximab-associated late-onset neutropenia."""
    recent = [e for e in ctx.record.immunosuppressants() if not e.ingredient.is_tier_a]
    named = any(e.ingredient.id == "rituximab" for e in recent)
    return ["wolach_rituximab_lon_2010"] if named else []


def _preliminary_note(state: NeutrophilState) -> list[str]:
    used = [c for c in (state.anc, state.wbc) if c and c.is_preliminary]
    return ["Preliminary result: confirm with the lab."] if used else []


def febrile_neutropenia(ctx: RuleContext) -> Finding | None:
    """Fever with ANC < 1.0 (setting; IDSA 2010 uses 0.5), or with ANC unknown and WBC < 2.0
    (setting). Sources: ASCO/IDSA 2018, IDSA 2010; G-CSF high-risk features from the ASCO
    growth-factor guideline (2015); flares and vasculitis after G-CSF in SLE from case reports
    (J Rheumatol 2006; Hellmich et al. 1999), which also give the lowest-effective-dose advice.

    Choice where the spec is silent: the ANC used is the latest within the 30-day current
    window; if it is older than the latest WBC, the ANC is treated as unknown and the WBC path
    applies too, so a febrile patient is never missed because a differential is stale.
    """
    k = ctx.knowledge
    found = fever(ctx.record, k)
    if found is None:
        return None
    state = critical_state(ctx.record, k)
    flag = lab_flagged_anc(ctx)
    anc_low = flag is not None or (
        state.anc is not None and state.anc.value < ctx.threshold("febrile_neutropenia_anc")
    )
    wbc_low = (
        state.anc_unknown
        and state.wbc is not None
        and state.wbc.value < ctx.threshold("anc_unknown_febrile_wbc")
    )
    if not (anc_low or wbc_low):
        return None
    evidence = [f"Fever: {found.description}"] + _neutrophil_evidence(ctx, state)
    if flag is not None and not (
        state.anc and state.anc.value < ctx.threshold("febrile_neutropenia_anc")
    ):
        summary = (
            f"Febrile neutropenia: fever and the lab flags the ANC critically low "
            f"({flag.received}). Evaluate now."
        )
        evidence.append(f"Lab critical-low flag on the ANC {flag.received} ({day(flag.time)})")
    elif anc_low:
        summary = f"Febrile neutropenia: fever with ANC {_anc_value(state)} x10^9/L. Evaluate now."
    else:
        summary = (
            "Possible febrile neutropenia: fever with WBC "
            f"{fmt(state.wbc.value)} x10^9/L; ANC not yet available."
        )
    if state.anc and days_between(state.anc.time, ctx.record.now) > 1:
        age = int(days_between(state.anc.time, ctx.record.now))
        evidence.append(f"Last ANC {age} days ago: repeat CBC stat.")
    return Finding(
        rule="FEBRILE_NEUTROPENIA",
        indicator="critical",
        summary=summary,
        evidence=evidence + _preliminary_note(state),
        recommendations=[
            "Emergency evaluation now: clinical assessment for sepsis, blood cultures.",
            "First dose of empiric broad-spectrum antibiotics within 1 hour of triage per the "
            "local febrile neutropenia pathway (ASCO/IDSA 2018).",
            *_drugs_to_hold(ctx),
            "G-CSF is not routine even here: consider it with hematology only for high-risk "
            "features (ANC < 0.1, sepsis or hypotension, pneumonia, invasive fungal infection, "
            "slow recovery expected). In SLE, flares and vasculitis after G-CSF are reported in "
            "case reports: "
            "use the lowest effective dose.",
        ],
        sources=[
            "asco_idsa_fn_2018",
            "idsa_fn_2010",
            "asco_gcsf_2015",
            *(["vasiliu_gcsf_sle_2006", "hellmich_gcsf_1999"] if ctx.record.lupus else []),
            *_late_onset_sources(ctx),
        ],
        orders=[
            SuggestedOrder("cbc", "stat", "Order CBC with differential (stat)", recommended=True),
            SuggestedOrder("hematology_referral", "urgent", "Refer to hematology (urgent)"),
        ],
        override_reasons=["already-addressed", "data-incorrect"],
    )


def neutropenia_severe(ctx: RuleContext) -> Finding | None:
    """Latest ANC < 0.5 x10^9/L (CTCAE grade 4), or WBC < 1.0 with ANC unknown (ANC <= WBC),
    without fever (fever makes it FEBRILE_NEUTROPENIA)."""
    k = ctx.knowledge
    state = critical_state(ctx.record, k)
    anc_severe = state.anc is not None and state.anc.value < ctx.threshold("severe_neutropenia_anc")
    flag = lab_flagged_anc(ctx)
    if not (anc_severe or state.anc_below_one_by_wbc or flag):
        return None
    if fever(ctx.record, k):
        return None
    if flag is not None and not anc_severe:
        summary = (
            f"The lab flags the ANC critically low: {flag.received}; confirm with the lab now "
            "and ask about fever."
        )
    elif anc_severe:
        summary = (
            f"Severe neutropenia (ANC {_anc_value(state)} x10^9/L): same-day review; "
            "ask about fever now."
        )
    else:
        summary = (
            f"WBC {fmt(state.wbc.value)} x10^9/L without a differential: ANC < 1.0, treat "
            "as severe neutropenia; ask about fever now."
        )
    return Finding(
        rule="NEUTROPENIA_SEVERE",
        indicator="critical",
        summary=summary,
        evidence=_neutrophil_evidence(ctx, state)
        + ([f"Lab critical-low flag on the ANC {flag.received} ({day(flag.time)})"] if flag else [])
        + [
            f"Threshold: ANC < {ctx.threshold('severe_neutropenia_anc'):g} x10^9/L "
            "(CTCAE v5 grade 4); a WBC < 1.0 means the ANC is < 1.0 even without a differential."
        ]
        + _preliminary_note(state),
        recommendations=[
            "Same-day clinician review; ask about fever now and give fever instructions.",
            *_drugs_to_hold(ctx),
            "Urgent CBC with differential and a manual blood smear.",
            "Hematology input today.",
        ],
        sources=["ctcae_v5", "idsa_fn_2010", *_hcq_label(ctx), *_late_onset_sources(ctx)],
        orders=[
            SuggestedOrder(
                "cbc", "stat", "Order CBC with differential and smear (stat)", recommended=True
            ),
            SuggestedOrder("hematology_referral", "urgent", "Refer to hematology (urgent)"),
        ],
        override_reasons=["already-addressed", "counts-reviewed", "data-incorrect"],
    )


def neutropenia_moderate(ctx: RuleContext) -> Finding | None:
    """Latest final ANC 0.5 to < 1.0 x10^9/L (CTCAE v5 grade 3) without fever."""
    k = ctx.knowledge
    state = neutrophil_state(ctx.record, k, include_preliminary=False)
    if state.anc is None or ctx.has_fired("NEUTROPENIA_SEVERE", "FEBRILE_NEUTROPENIA"):
        return None
    low, high = ctx.threshold("severe_neutropenia_anc"), ctx.threshold("moderate_neutropenia_anc")
    if not low <= state.anc.value < high or fever(ctx.record, k):
        return None
    return Finding(
        rule="NEUTROPENIA_MODERATE",
        indicator="warning",
        summary=f"Moderate neutropenia (ANC {_anc_value(state)} x10^9/L): repeat CBC with "
        "differential within 48-72 h.",
        evidence=_neutrophil_evidence(ctx, state)
        + [f"Threshold: ANC {low:g} to < {high:g} x10^9/L (CTCAE v5 grade 3)."],
        recommendations=[
            "Repeat CBC with differential within 48-72 hours.",
            "Review drugs that can lower neutrophils "
            f"({', '.join(ctx.knowledge.also_consider)}, and the immunosuppressants).",
            "Tell the patient to report fever (>= 38.0 °C) at once.",
        ],
        sources=["ctcae_v5"],
        orders=[
            SuggestedOrder(
                "cbc", "urgent", "Order CBC with differential (within 48-72 h)", recommended=True
            )
        ],
        override_reasons=["already-addressed", "counts-reviewed", "duffy-null"],
    )
