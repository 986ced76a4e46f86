"""Neutropenia rules: FEBRILE_NEUTROPENIA, NEUTROPENIA_SEVERE, NEUTROPENIA_MODERATE.

Each rule is two steps: `assess_*` decides from the record (which count, which cause, which
drugs) and returns a small frozen assessment or None; the rule then words that assessment
into the card. The wording helpers never decide whether a card fires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cds_service.fhir.dates import day, days_between
from cds_service.record import Count, DrugExposure, LabFlag, PatientRecord
from cds_service.rules.assessments import (
    Fever,
    NeutrophilState,
    critical_state,
    dangerous_combinations,
    fever,
    fmt,
    neutrophil_state,
    tier_a_current,
    trend,
)
from cds_service.rules.base import (
    MAX_SUMMARY,
    Finding,
    RuleContext,
    SuggestedOrder,
    shown_limit,
    upper_first,
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
    own_drugs_first,
    with_genotype_note,
)
from cds_service.rules.indication import (
    Indication,
    indication,
    transplant_evidence,
    transplant_line,
)

# ---------------------------------------------------------------------------------------------
# Facts and words the three cards share


def cyclophosphamide_last_pulse(ctx: RuleContext) -> datetime | None:
    """The last cyclophosphamide dose when it was in the nadir window (<= 28 days ago, §2.1
    last-dose date: the latest administration, else the end or start of the newest record)."""
    record = ctx.record
    exposure = record.exposure("cyclophosphamide")
    if exposure is None:
        return None
    dates = [exposure.last_dose] if exposure.last_dose else []
    if not dates:
        ends = [r.end or r.start for r in exposure.records if r.exposure == "current"]
        dates = [d for d in ends if d is not None]
    dates = [d for d in dates if d <= record.now]
    if not dates:
        return None
    last = max(dates)
    window_days = ctx.threshold("cyclophosphamide_nadir_days")
    return last if days_between(last, record.now) <= window_days else None


def lab_flagged_anc(ctx: RuleContext) -> LabFlag | None:
    """The latest ANC the lab flags critically low (clinical rules §2.3): severe even when its
    value cannot be converted ("<0.1" with no unit), never only a data-quality note."""
    k = ctx.knowledge
    return ctx.record.critical_low_flag(
        "anc", bool(k.settings["preliminary_critical_results"]), k.threshold("current_days")
    )


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


def _anc_value(state: NeutrophilState) -> str:
    """The ANC as judged, with its comparator when the lab censored it ("< 0.1")."""
    return state.anc.bound if state.anc else "unknown"


def _anc_bound_by_wbc(wbc: Count) -> str:
    """What a WBC with no differential says of the ANC (clinical rules §2.4 "ANC unknown" v4):
    "ANC at most 0.05"; a censored WBC keeps its sign ("ANC below 0.5"). Never a formula such
    as "ANC <= WBC"."""
    if wbc.comparator == "<":
        return f"ANC below {wbc.value:g}"
    return f"ANC at most {wbc.value:g}" if wbc.comparator else f"ANC at most {fmt(wbc.value)}"


def _anc_at_most_wbc(wbc: Count) -> str:
    """ "ANC at most 0.05: WBC 0.05 with no differential"; "ANC below 0.5: WBC < 0.5 with no
    differential" (v4 plain English)."""
    return f"{_anc_bound_by_wbc(wbc)}: WBC {wbc.bound} with no differential"


def _flag_line(flag: LabFlag) -> str:
    return f"Lab critical-low flag on the ANC {flag.received} ({day(flag.time)})"


def _preliminary_note(state: NeutrophilState) -> list[str]:
    used = [c for c in (state.anc, state.wbc) if c and c.is_preliminary]
    return ["Preliminary result: confirm with the lab."] if used else []


def _pulse_line(record: PatientRecord, pulse: datetime) -> str:
    """A cyclophosphamide pulse is described by its date and nadir, never "hold" (v3)."""
    days = int(days_between(pulse, record.now))
    return (
        f"Cyclophosphamide pulse on {day(pulse)} (day {days}): nadir day 7-14, recovery about "
        "day 21; delay the next pulse until the counts recover."
    )


def _held_and_reviewed(record: PatientRecord) -> tuple[list[str], list[str]]:
    """The tier A drugs to hold pending review, and the tier B drugs and, when not explained by
    lupus or another drug, hydroxychloroquine to review (clinical rules §1.6). A
    cyclophosphamide pulse is neither: it has its own nadir line."""
    drugs = record.immunosuppressants()
    held = [e.ingredient.display for e in drugs if e.ingredient.is_tier_a]
    held = [name for name in held if name != "cyclophosphamide"]
    review = [e.ingredient.display for e in drugs if not e.ingredient.is_tier_a]
    if any(e.ingredient.id == "rituximab" for e in drugs):
        review = [n if n != "rituximab" else "rituximab (late-onset neutropenia)" for n in review]
    if record.takes("hydroxychloroquine"):
        cause = "lupus or another drug does" if record.lupus else "another drug does"
        review.append(f"hydroxychloroquine if {cause} not explain it (label)")
    return held, review


def _drugs_to_hold(ctx: RuleContext, pulse: datetime | None) -> list[str]:
    """At most two lines: the drugs to hold and to review (`_held_and_reviewed`), then a recent
    cyclophosphamide `pulse` by its nadir, never "hold" (v3 wording). v4: for a transplant
    recipient no drug is held on the card's own advice ("discuss with the transplant team today
    before changing tacrolimus / mycophenolate mofetil"); for an unknown indication the card
    adds "inform the prescribing team".

    Choice where the spec is silent: a transplant recipient's every current immunosuppressant
    (tier A or B, not a cyclophosphamide pulse) is treated as possibly anti-rejection, as the
    card cannot tell which one protects the graft."""
    record = ctx.record
    drugs = record.immunosuppressants()
    held, review = _held_and_reviewed(record)
    who = indication(record)
    if who == "transplant" and drugs:
        # v4: an anti-rejection drug is never withheld on the card's own advice.
        names = [e.ingredient.display for e in drugs if e.ingredient.id != "cyclophosphamide"]
        lines = [transplant_line(names)] if names else []
        lines += [f"Review {line}." for line in review if line.startswith("hydroxychloroquine")]
    else:
        parts = []
        if held:
            inform = " and inform the prescribing team" if who == "unknown" else ""
            parts.append(f"Hold {', '.join(held)} pending review{inform}")
        if review:
            parts.append(f"{'also review' if held else 'Review'} {', '.join(review)}")
        lines = ["; ".join(parts) + "."] if parts else []
    return lines + ([_pulse_line(record, pulse)] if pulse is not None else [])


def _drug_review_sources(ctx: RuleContext, pulse_named: bool) -> list[str]:
    """The labels and papers behind the drug lines: the hydroxychloroquine label when the card
    names it for review, rituximab late-onset neutropenia when named, the cyclophosphamide
    label when the card is about a recent pulse."""
    on_hcq = ctx.record.takes("hydroxychloroquine")
    sources = ["label_hydroxychloroquine"] if on_hcq else []
    recent = [e for e in ctx.record.immunosuppressants() if not e.ingredient.is_tier_a]
    if any(e.ingredient.id == "rituximab" for e in recent):
        sources.append("wolach_rituximab_lon_2010")
    return sources + (["label_cyclophosphamide"] if pulse_named else [])


def _absorbed_drug_lines(ctx: RuleContext) -> list[str]:
    """The dose-review card's drug content, carried by the critical card that absorbs it
    (clinical rules §3 precedence v3): each drug, its dose as prescribed, mg/kg/day, and an
    interacting drug."""
    drugs = [
        e
        for e in ctx.record.immunosuppressants()
        if e.ingredient.is_tier_a and (e.current or e.ingredient.id != "cyclophosphamide")
    ]  # a past cyclophosphamide pulse has its own nadir line
    return drug_lines(ctx, drugs)


# ---------------------------------------------------------------------------------------------
# FEBRILE_NEUTROPENIA

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
    found = fever(ctx.record, ctx.knowledge)
    if found is None:
        return None
    state = critical_state(ctx.record, ctx.knowledge)
    pulse = cyclophosphamide_last_pulse(ctx)
    # In the nadir window any WBC after the dose counts, preliminary included.
    wbcs = ctx.record.series("wbc", include_preliminary=True)
    no_count = pulse is not None and not any(c.time > pulse for c in wbcs)
    flag = lab_flagged_anc(ctx)
    cause = _febrile_cause(ctx, state, flag, no_count)
    if cause is None:
        return None
    return FebrileNeutropenia(found, state, cause, flag, pulse, no_count)


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
    found = assess_febrile_neutropenia(ctx)
    if found is None:
        return None
    decisive = _febrile_decisive(found)
    lupus = bool(ctx.record.lupus)
    finding = Finding(
        indicator="critical",
        summary=_FEBRILE_SUMMARY[found.cause].format(decisive),
        evidence=_febrile_evidence(ctx, found),
        recommendations=[
            "CBC with differential stat and emergency evaluation now: assess for sepsis, blood "
            "cultures."
            if found.cause == "nadir"
            else "Emergency evaluation now: assess for sepsis, blood cultures.",
            "Empiric broad-spectrum antibiotics within 1 hour of triage per the local febrile "
            "neutropenia pathway (ASCO/IDSA 2018).",
            *_drugs_to_hold(ctx, found.pulse),
            _gcsf_high_risk_only(ctx, lupus),
        ],
        sources=[
            "asco_idsa_fn_2018",
            "idsa_fn_2010",
            "asco_gcsf_2015",
            *(["vasiliu_gcsf_sle_2006", "hellmich_gcsf_1999"] if lupus else []),
            *_drug_review_sources(ctx, found.no_count_since_pulse),
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


def _febrile_decisive(found: FebrileNeutropenia) -> str:
    """The count, flag or dose that makes it (possible) febrile neutropenia."""
    wbc = found.state.wbc
    if found.cause == "anc":
        return f"ANC {_anc_value(found.state)} x10^9/L"
    if found.cause == "lab_flag" and found.flag is not None:
        return f"lab flags the ANC critically low: {found.flag.received}"
    if found.cause == "wbc_below_cutoff" and wbc is not None:
        # v4: the ANC is below the WBC, so below the cut-off; a censored WBC keeps its sign
        # ("WBC < 0.5", never "0.50").
        below = f"{wbc.value:g}" if wbc.comparator else fmt(wbc.value)
        return f"ANC below {below} (WBC {wbc.bound}, no differential yet)"
    if found.cause == "anc_pending" and wbc is not None:
        return f"WBC {wbc.bound} x10^9/L, ANC not yet available"
    assert found.pulse is not None  # the nadir cause: a pulse with no count since
    return f"no count since the cyclophosphamide dose on {day(found.pulse)}"


def _febrile_evidence(ctx: RuleContext, found: FebrileNeutropenia) -> list[str]:
    lines = [f"Fever: {found.fever.description}"] + _neutrophil_evidence(ctx, found.state)
    if found.cause == "lab_flag" and found.flag is not None:
        lines.append(_flag_line(found.flag))
    if found.cause == "nadir" and found.pulse is not None:
        lines.append(
            f"Cyclophosphamide dose on {day(found.pulse)}; no WBC drawn since (a pre-pulse count "
            "does not describe the nadir)."
        )
    anc = found.state.anc
    if anc is not None and not found.no_count_since_pulse:
        age = days_between(anc.time, ctx.record.now)
        if age > ctx.threshold("febrile_anc_repeat_days"):
            lines.append(f"Last ANC {int(age)} days ago: repeat CBC stat.")
    return lines + _absorbed_drug_lines(ctx) + _preliminary_note(found.state)


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


# ---------------------------------------------------------------------------------------------
# NEUTROPENIA_SEVERE

# What makes it severe (§2.4, §2.3), in the order they are judged:
SevereCause = Literal[
    "anc",  # ANC < 0.5 (CTCAE v5 grade 4)
    "lab_flag",  # an ANC the lab flags critically low, its value not below 0.5
    "wbc",  # no differential and WBC < 1.0: the ANC is at most the WBC
]


@dataclass(frozen=True)
class SevereNeutropenia:
    state: NeutrophilState  # the critical-state counts (preliminary results per setting)
    cause: SevereCause
    flag: LabFlag | None  # the lab's critical-low flag on the ANC
    fever: Fever | None  # fever with no febrile card: it leads the card
    pulse: datetime | None  # the last cyclophosphamide dose in the nadir window


def assess_severe_neutropenia(ctx: RuleContext) -> SevereNeutropenia | None:
    state = critical_state(ctx.record, ctx.knowledge)
    flag = lab_flagged_anc(ctx)
    cause: SevereCause
    if state.anc is not None and state.anc.value < ctx.threshold("severe_neutropenia_anc"):
        cause = "anc"
    elif flag is not None:
        cause = "lab_flag"
    elif state.anc_below_one_by_wbc:
        cause = "wbc"
    else:
        return None
    found_fever = fever(ctx.record, ctx.knowledge)
    return SevereNeutropenia(state, cause, flag, found_fever, cyclophosphamide_last_pulse(ctx))


def neutropenia_severe(ctx: RuleContext) -> Finding | None:
    """Latest ANC < 0.5 x10^9/L (CTCAE grade 4), or WBC < 1.0 with ANC unknown (ANC <= WBC),
    silenced by a FEBRILE_NEUTROPENIA card (catalogue precedence), not by fever alone. It
    absorbs DRUG_CYTOPENIA_DOSE_REVIEW (v3 precedence) and carries its drug lines. With ANC
    unknown the card quotes the bound the WBC gives ("ANC at most 0.05: WBC 0.05 with no
    differential", v4 plain English), never "ANC < 1.0" (v3 wording); below 0.1 it names
    profound agranulocytosis.

    Choice where the spec is silent: beside a firing REFRACTORY_LEUKOPENIA_REFERRAL this card
    stays (the contract's precedence does not merge them): it is the acute problem (same-day
    review, fever check), the referral card the refractory course (work-up, joint review).
    With fever and no febrile card (a site whose febrile-neutropenia ANC is below the severe
    one, or a service that runs a subset of rules), the card still speaks and leads with the
    fever: silence would be the worst answer for a febrile patient with ANC < 0.5."""
    found = assess_severe_neutropenia(ctx)
    if found is None:
        return None
    decisive, summary, basis = _severe_words(ctx, found)
    if found.fever:
        summary = (
            f"Severe neutropenia ({decisive}) with fever: evaluate now, cultures, antibiotics "
            "within 1 h."
        )
    finding = Finding(
        indicator="critical",
        summary=summary,
        evidence=([f"Fever: {found.fever.description}"] if found.fever else [])
        + _neutrophil_evidence(ctx, found.state)
        + [basis]
        + _absorbed_drug_lines(ctx)
        + _preliminary_note(found.state),
        recommendations=[
            # With fever the patient needs the febrile-neutropenia pathway, not a fever check.
            "Emergency evaluation now: assess for sepsis, blood cultures; empiric antibiotics "
            "within 1 hour of triage (ASCO/IDSA 2018)."
            if found.fever
            else "Same-day clinician review; ask about fever now and give fever instructions.",
            *_drugs_to_hold(ctx, found.pulse),
            "Urgent CBC with differential and a manual blood smear.",
            "Hematology input today.",
        ],
        sources=["ctcae_v5", "idsa_fn_2010"]
        + (["asco_idsa_fn_2018"] if found.fever else [])
        + _drug_review_sources(ctx, found.pulse is not None),
        orders=[
            SuggestedOrder(
                "cbc", "stat", "Order CBC with differential and smear (stat)", recommended=True
            ),
            SuggestedOrder("hematology_referral", "urgent", "Refer to hematology (urgent)"),
        ],
        override_reasons=["already-addressed", "counts-reviewed", "data-incorrect"],
        decisive=decisive,
    )
    return with_genotype_note(ctx, finding)


def _severe_words(ctx: RuleContext, found: SevereNeutropenia) -> tuple[str, str, str]:
    """(decisive value, summary without fever, the evidence line that says why it is severe)."""
    grade4 = f"{ctx.threshold('severe_neutropenia_anc'):g}"
    if found.cause == "lab_flag" and found.flag is not None:
        decisive = f"the lab flags the ANC critically low: {found.flag.received}"
        summary = f"{upper_first(decisive)}; confirm with the lab now, ask about fever."
        return decisive, summary, f"{_flag_line(found.flag)}."
    if found.cause == "anc":
        decisive = f"ANC {_anc_value(found.state)} x10^9/L"
        summary = f"Severe neutropenia ({decisive}): same-day review; ask about fever now."
        return decisive, summary, f"Threshold: ANC < {grade4} x10^9/L (CTCAE v5 grade 4)."
    wbc = found.state.wbc
    assert wbc is not None  # the "wbc" cause reads the WBC
    # The decisive value is the ANC bound (an order card quotes it: "Severe neutropenia
    # (ANC at most 0.90): do not start ..."); the summary says where it comes from.
    words = _anc_at_most_wbc(wbc)
    profound = ctx.threshold("profound_neutropenia_anc")
    basis = f"{words} (x10^9/L): treated as ANC < {grade4} (CTCAE v5 grade 4)" + (
        f"; below {shown_limit(profound)}, profound agranulocytosis."
        if wbc.value < profound
        else "."
    )
    summary = f"{words}. Treat as severe neutropenia; ask about fever now."
    return f"{_anc_bound_by_wbc(wbc)} x10^9/L", summary, basis


# ---------------------------------------------------------------------------------------------
# NEUTROPENIA_MODERATE


@dataclass(frozen=True)
class ModerateNeutropenia:
    state: NeutrophilState  # final results only
    anc: Count  # 0.5 to < 1.0 (CTCAE v5 grade 3)
    # v4: the current tier A drugs whose dose review this card carries, who decides about them,
    # and the ALC < 0.5 that review would have absorbed.
    drugs: tuple[DrugExposure, ...]
    who: Indication
    lymphopenia: AbsorbedLymphopenia | None


def assess_moderate_neutropenia(ctx: RuleContext) -> ModerateNeutropenia | None:
    state = neutrophil_state(ctx.record, ctx.knowledge, include_preliminary=False)
    anc = state.anc
    low, high = ctx.threshold("severe_neutropenia_anc"), ctx.threshold("moderate_neutropenia_anc")
    if anc is None or not low <= anc.value < high:
        return None
    drugs = tuple(tier_a_current(ctx.record))
    lymphopenia = absorbed_lymphopenia(ctx, drugs[0].ingredient.display) if drugs else None
    return ModerateNeutropenia(state, anc, drugs, indication(ctx.record), lymphopenia)


def neutropenia_moderate(ctx: RuleContext) -> Finding | None:
    """Latest final ANC 0.5 to < 1.0 x10^9/L (CTCAE v5 grade 3). The severe,
    febrile and refractory cards suppress it (catalogue precedence); the refractory card
    absorbs it (v3). (v4) On a current tier A drug it absorbs DRUG_CYTOPENIA_DOSE_REVIEW for
    the same neutropenia: one card ("Moderate neutropenia (ANC 0.70) on azathioprine: reduce
    or withhold per label; repeat CBC in 48-72 h") carrying the drug lines (dose as prescribed,
    mg/kg/day, an interacting drug) and each drug's label action.

    What the absorbed dose-review card would have said comes along (v4): an ALC < 0.5 brings
    its lymphopenia content, graded by episode with the last three ALCs, the infection screen
    and who decides (the dose-review card absorbs LYMPHOPENIA_PROFOUND, so this card carries
    it and LYMPHOPENIA_PROFOUND does not run after it); who decides follows the indication
    (rules/indication.py): "reduce or withhold per label" only for a rheumatic patient; a
    transplant recipient's drugs are discussed with the transplant team today (the label's
    advice moves to the evidence for that team), and for an unknown indication the card says
    "inform the prescribing team".

    Choices where the spec is silent: the absorbed card's combination advice comes along;
    "patient is Duffy-null" is never offered (an ANC < 1.0 is not explained by a Duffy-null
    associated neutrophil count, v4); the card stays a warning even when the lymphopenia it
    carries is stable (the neutropenia decides)."""
    found = assess_moderate_neutropenia(ctx)
    if found is None:
        return None
    recommendations = _moderate_recommendations(ctx, found)
    carries = ("DRUG_CYTOPENIA_DOSE_REVIEW",) if found.drugs else ()
    finding = Finding(
        decisive=f"ANC {found.anc.bound} x10^9/L",
        indicator="warning",
        summary=_moderate_summary(found),
        evidence=_moderate_evidence(ctx, found),
        recommendations=list(dict.fromkeys(recommendations))[:5],
        sources=_moderate_sources(ctx, found, recommendations),
        orders=[
            SuggestedOrder(
                "cbc", "urgent", "Order CBC with differential (within 48-72 h)", recommended=True
            )
        ],
        override_reasons=["already-addressed", "counts-reviewed"],
        carries=carries + (("LYMPHOPENIA_PROFOUND",) if found.lymphopenia else ()),
    )
    return with_genotype_note(ctx, finding)


# What the card asks about the drugs, by who decides about them (v4, rules/indication.py).
_DRUG_ACTION: dict[Indication, str] = {
    "transplant": "discuss with the transplant team today",
    "rheumatic": "reduce or withhold per label",
    "unknown": "inform the prescribing team today",
}


def _moderate_summary(found: ModerateNeutropenia) -> str:
    anc = _anc_value(found.state)
    if not found.drugs:
        return (
            f"Moderate neutropenia (ANC {anc} x10^9/L): repeat CBC with differential within "
            "48-72 h."
        )
    action = _DRUG_ACTION[found.who]
    names = " and ".join(e.ingredient.display for e in found.drugs[:2])
    summary = f"Moderate neutropenia (ANC {anc}) on {names}: {action}; repeat CBC in 48-72 h."
    if len(summary) > MAX_SUMMARY:
        first = found.drugs[0].ingredient.display
        summary = f"Moderate neutropenia (ANC {anc}) on {first}: {action}; repeat CBC in 48-72 h."
    return summary


def _label_advice(found: ModerateNeutropenia) -> list[str]:
    return [e.ingredient.dose_review_advice for e in found.drugs if e.ingredient.dose_review_advice]


def _moderate_evidence(ctx: RuleContext, found: ModerateNeutropenia) -> list[str]:
    low, high = ctx.threshold("severe_neutropenia_anc"), ctx.threshold("moderate_neutropenia_anc")
    lines = _neutrophil_evidence(ctx, found.state) + [
        f"Threshold: ANC {shown_limit(low)} to < {shown_limit(high, 1)} x10^9/L (CTCAE v5 grade 3)."
    ]
    if not found.drugs:
        return lines
    lines += duffy_null_evidence(ctx.record) + drug_lines(ctx, list(found.drugs))
    lines += transplant_evidence(ctx.record)
    if found.who == "transplant":
        # The label's advice is for the transplant team, not the card's own advice.
        lines += [f"Label advice for the transplant team: {line}" for line in _label_advice(found)]
    return lines + ([found.lymphopenia.evidence] if found.lymphopenia else [])


def _moderate_recommendations(ctx: RuleContext, found: ModerateNeutropenia) -> list[str]:
    """Repeat the CBC and the fever instruction; on a tier A drug the label action as the
    indication allows (v4: an anti-rejection drug is never withheld on the card's own advice),
    the dangerous combinations and the carried lymphopenia's advice; else the patient's own
    drugs first. Not yet de-duplicated or capped."""
    fever_line = (
        f"Tell the patient to report a fever of {ctx.threshold('fever_sustained_cel'):.1f} °C "
        "or more at once."
    )
    repeat = "Repeat CBC with differential within 48-72 hours."
    if not found.drugs:
        return [repeat, own_drugs_first(ctx), fever_line]
    if found.who == "transplant":
        advice = [transplant_line(immunosuppressant_names(ctx))]
    elif found.who == "rheumatic":
        advice = _label_advice(found)
    else:
        first = found.drugs[0].ingredient.display
        advice = [
            *_label_advice(found),
            f"Inform the prescribing team today: they decide whether to change {first}.",
        ]
    advice += [text for _, _, text in dangerous_combinations(ctx.record, ctx.knowledge)]
    advice += found.lymphopenia.advice if found.lymphopenia else []
    return [repeat, fever_line, *advice, *lupus_drug_advice(ctx.record)]


def _moderate_sources(
    ctx: RuleContext, found: ModerateNeutropenia, recommendations: list[str]
) -> list[str]:
    if not found.drugs:
        return ["ctcae_v5"]
    sources = ["ctcae_v5", *drug_sources([e.ingredient for e in found.drugs]), "bsr_dmard_2017"]
    sources += found.lymphopenia.sources if found.lymphopenia else []
    sources += hcq_source(recommendations)
    if ctx.record.duffy_null:
        sources += ["merz_duffy_2023", "hibbs_duffy_2025"]
    return list(dict.fromkeys(sources))
