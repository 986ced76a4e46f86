"""FEBRILE_NEUTROPENIA (clinical rules §2.4): fever with neutropenia, or possible febrile
neutropenia when the ANC is not yet known or no count was drawn since a cyclophosphamide dose.
`assess_febrile_neutropenia` decides the cause; the rule words it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cds_service.days import day, days_between
from cds_service.record import LabFlag
from cds_service.rules.assessments import fmt
from cds_service.rules.base import Finding, RuleContext, SuggestedOrder, shown_limit
from cds_service.rules.drugs import with_genotype_note
from cds_service.rules.judgements import Fever, NeutrophilState
from cds_service.rules.neutropenia import (
    anc_value,
    flag_line,
    lab_flagged_anc,
    neutrophil_evidence,
    preliminary_note,
)
from cds_service.rules.neutropenia_drugs import (
    absorbed_drug_lines,
    cyclophosphamide_last_pulse,
    drug_review_sources,
    drugs_to_hold,
)

# What makes a febrile patient's neutropenia, in the order they are judged (§2.4):
FebrileCause = Literal[
    "anc",  # an ANC below the febrile-neutropenia cut-off
    "lab_flag",  # an ANC the lab flags critically low (§2.3), its value not below the cut-off
    "wbc_below_cutoff",  # no differential, a WBC below the cut-off: the ANC is too (v4)
    "anc_pending",  # no differential, a WBC from the cut-off to < 2.0: possible
    "nadir",  # a cyclophosphamide dose in the nadir window and no WBC since (v3): possible
]


@dataclass(frozen=True)
class FebrileNeutropenia:
    fever: Fever
    state: NeutrophilState  # the critical-state counts (preliminary results per setting)
    cause: FebrileCause
    flag: LabFlag | None  # the lab's critical-low flag on the ANC
    pulse: datetime | None  # the last cyclophosphamide dose in the nadir window
    no_count_since_pulse: bool  # no WBC drawn after that dose (a pre-pulse count is not the nadir)


def assess_febrile_neutropenia(ctx: RuleContext) -> FebrileNeutropenia | None:
    found_fever = ctx.fever
    if found_fever is None:
        return None
    state = ctx.critical_neutrophils
    pulse = cyclophosphamide_last_pulse(ctx)
    # In the nadir window any WBC after the dose counts, preliminary included.
    wbcs = ctx.record.series("wbc", include_preliminary=True)
    no_count = pulse is not None and not any(c.time > pulse for c in wbcs)
    flag = lab_flagged_anc(ctx)
    cause = _febrile_cause(ctx, state, flag, no_count)
    if cause is None:
        return None
    return FebrileNeutropenia(found_fever, state, cause, flag, pulse, no_count)


def _febrile_cause(
    ctx: RuleContext, state: NeutrophilState, flag: LabFlag | None, no_count_since_pulse: bool
) -> FebrileCause | None:
    cutoff = ctx.threshold("febrile_neutropenia_anc")
    if state.anc is not None and state.anc.value < cutoff:
        return "anc"
    if flag is not None:
        return "lab_flag"
    wbc = state.wbc
    if state.anc_unknown and wbc and wbc.value < ctx.threshold("anc_unknown_febrile_wbc"):
        return "wbc_below_cutoff" if wbc.value < cutoff else "anc_pending"
    return "nadir" if no_count_since_pulse else None


def febrile_neutropenia(ctx: RuleContext) -> Finding | None:
    """Fever with ANC < 1.0 (setting; IDSA 2010 uses 0.5), or with ANC unknown and WBC < 2.0
    (setting), or (v3) fever with a cyclophosphamide dose <= 28 days ago and no WBC drawn since
    that dose (possible febrile neutropenia in the nadir window), or fever with an ANC the lab
    flags critically low. Sources: ASCO/IDSA 2018, IDSA 2010; G-CSF high-risk features from the
    ASCO growth-factor guideline (2015); flares and vasculitis after G-CSF in SLE from case
    reports (J Rheumatol 2006; Hellmich et al. 1999), which also give the lowest-effective-dose
    advice. It absorbs DRUG_CYTOPENIA_DOSE_REVIEW (v3 precedence) and carries its drug lines.

    v4: with no differential and a WBC below the febrile-neutropenia ANC cut-off (setting, 1.0)
    the ANC is below it too: "Febrile neutropenia: ANC below 0.80 (WBC 0.80, no differential
    yet)", not "possible"; a censored WBC keeps its sign ("WBC < 0.5"). "Possible febrile
    neutropenia: ANC not yet available" is for a WBC from the cut-off to < 2.0.

    Choices where the spec is silent: the ANC used is the latest within the 30-day current
    window; if it is older than the latest WBC, the ANC is treated as unknown and the WBC path
    applies too, so a febrile patient is never missed because a differential is stale. In the
    nadir window any WBC after the dose counts as "a count since the dose", preliminary included
    (the card then judges that count as usual).
    """
    febrile = assess_febrile_neutropenia(ctx)
    if febrile is None:
        return None
    decisive = _febrile_decisive(febrile)
    lupus = bool(ctx.record.lupus)
    finding = Finding(
        indicator="critical",
        summary=_FEBRILE_SUMMARY[febrile.cause].format(decisive),
        evidence=_febrile_evidence(ctx, febrile),
        recommendations=[
            "CBC with differential stat and emergency evaluation now: assess for sepsis, blood "
            "cultures."
            if febrile.cause == "nadir"
            else "Emergency evaluation now: assess for sepsis, blood cultures.",
            "Empiric broad-spectrum antibiotics within 1 hour of triage per the local febrile "
            "neutropenia pathway (ASCO/IDSA 2018).",
            *drugs_to_hold(ctx, febrile.pulse),
            _gcsf_high_risk_only(ctx, lupus),
        ],
        sources=[
            "asco_idsa_fn_2018",
            "idsa_fn_2010",
            "asco_gcsf_2015",
            *(["vasiliu_gcsf_sle_2006", "hellmich_gcsf_1999"] if lupus else []),
            *drug_review_sources(ctx, febrile.no_count_since_pulse),
        ],
        orders=[
            SuggestedOrder("cbc", "stat", "Order CBC with differential (stat)", recommended=True),
            SuggestedOrder("hematology_referral", "urgent", "Refer to hematology (urgent)"),
        ],
        override_reasons=["already-addressed", "data-incorrect"],
        decisive=decisive,
    )
    return with_genotype_note(ctx, finding)


_FEBRILE_SUMMARY: dict[FebrileCause, str] = {
    "anc": "Febrile neutropenia ({}): evaluate now, cultures, antibiotics within 1 h.",
    "lab_flag": "Febrile neutropenia ({}): evaluate now, cultures, antibiotics within 1 h.",
    "wbc_below_cutoff": "Febrile neutropenia: {}: evaluate now, cultures, antibiotics within 1 h.",
    "anc_pending": "Possible febrile neutropenia ({}): evaluate now, CBC with differential stat.",
    "nadir": "Possible febrile neutropenia: {} (nadir day 7-14): CBC with differential stat.",
}


def _febrile_decisive(febrile: FebrileNeutropenia) -> str:
    """The count, flag or dose that makes it (possible) febrile neutropenia."""
    wbc = febrile.state.wbc
    if febrile.cause == "anc":
        return f"ANC {anc_value(febrile.state)} x10^9/L"
    if febrile.cause == "lab_flag" and febrile.flag is not None:
        return f"lab flags the ANC critically low: {febrile.flag.received}"
    if febrile.cause == "wbc_below_cutoff" and wbc is not None:
        # v4: the ANC is below the WBC, so below the cut-off; a censored WBC keeps its sign
        # ("WBC < 0.5", never "0.50").
        below = f"{wbc.value:g}" if wbc.comparator else fmt(wbc.value)
        return f"ANC below {below} (WBC {wbc.bound}, no differential yet)"
    if febrile.cause == "anc_pending" and wbc is not None:
        return f"WBC {wbc.bound} x10^9/L, ANC not yet available"
    assert febrile.pulse is not None  # the nadir cause: a pulse with no count since
    return f"no count since the cyclophosphamide dose on {day(febrile.pulse)}"


def _febrile_evidence(ctx: RuleContext, febrile: FebrileNeutropenia) -> list[str]:
    lines = [f"Fever: {febrile.fever.description}"] + neutrophil_evidence(ctx, febrile.state)
    if febrile.cause == "lab_flag" and febrile.flag is not None:
        lines.append(flag_line(febrile.flag))
    if febrile.cause == "nadir" and febrile.pulse is not None:
        lines.append(
            f"Cyclophosphamide dose on {day(febrile.pulse)}; no WBC drawn since (a pre-pulse "
            "count does not describe the nadir)."
        )
    anc = febrile.state.anc
    if anc is not None and not febrile.no_count_since_pulse:
        age = days_between(anc.time, ctx.record.now)
        if age > ctx.threshold("febrile_anc_repeat_days"):
            lines.append(f"Last ANC {int(age)} days ago: repeat CBC stat.")
    return lines + absorbed_drug_lines(ctx) + preliminary_note(febrile.state)


def _gcsf_high_risk_only(ctx: RuleContext, lupus: bool) -> str:
    """G-CSF only for the ASCO 2015 high-risk features; in SLE its reported flares (§4)."""
    profound = shown_limit(ctx.threshold("profound_neutropenia_anc"), 1)
    return (
        "G-CSF is not routine: consider it with hematology only for high-risk features "
        f"(ANC < {profound}, sepsis, pneumonia, invasive fungal infection, slow recovery)."
    ) + (
        " In SLE, flares and vasculitis after G-CSF are reported: lowest effective dose."
        if lupus
        else ""
    )
