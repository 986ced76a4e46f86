"""Neutropenia rules: FEBRILE_NEUTROPENIA, NEUTROPENIA_SEVERE, NEUTROPENIA_MODERATE."""

from __future__ import annotations

from datetime import datetime

from cds_service.days import day, days_between
from cds_service.record import Count, LabFlag, PatientRecord
from cds_service.rules.assessments import (
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
from cds_service.rules.indication import indication, transplant_evidence, transplant_line


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


def _pulse_line(record: PatientRecord, pulse: datetime) -> str:
    """A cyclophosphamide pulse is described by its date and nadir, never "hold" (v3)."""
    days = int(days_between(pulse, record.now))
    return (
        f"Cyclophosphamide pulse on {day(pulse)} (day {days}): nadir day 7-14, recovery about "
        "day 21; delay the next pulse until the counts recover."
    )


def _drugs_to_hold(ctx: RuleContext) -> list[str]:
    """At most two lines: the tier A drugs to hold pending review (and the tier B drugs and,
    when not explained by lupus or another drug, hydroxychloroquine to review: clinical rules
    §1.6), then a recent cyclophosphamide pulse by its nadir, never "hold" (v3 wording).
    v4: for a transplant recipient no drug is held on the card's own advice ("discuss with the
    transplant team today before changing tacrolimus / mycophenolate mofetil"); for an unknown
    indication the card adds "inform the prescribing team".

    Choice where the spec is silent: a transplant recipient's every current immunosuppressant
    (tier A or B, not a cyclophosphamide pulse) is treated as possibly anti-rejection, as the
    card cannot tell which one protects the graft."""
    record = ctx.record
    drugs = record.immunosuppressants()
    held = [e.ingredient.display for e in drugs if e.ingredient.is_tier_a]
    held = [name for name in held if name != "cyclophosphamide"]
    review = [e.ingredient.display for e in drugs if not e.ingredient.is_tier_a]
    if any(e.ingredient.id == "rituximab" for e in drugs):
        review = [n if n != "rituximab" else "rituximab (late-onset neutropenia)" for n in review]
    if record.takes("hydroxychloroquine"):
        cause = "lupus or another drug does" if record.lupus else "another drug does"
        review.append(f"hydroxychloroquine if {cause} not explain it (label)")
    parts = []
    who = indication(record)
    if who == "transplant" and (held or drugs):
        # v4: an anti-rejection drug is never withheld on the card's own advice.
        names = [e.ingredient.display for e in drugs if e.ingredient.id != "cyclophosphamide"]
        lines = [transplant_line(names)] if names else []
        hcq = [line for line in review if line.startswith("hydroxychloroquine")]
        lines += [f"Review {hcq[0]}."] if hcq else []
    else:
        if held:
            inform = " and inform the prescribing team" if who == "unknown" else ""
            parts.append(f"Hold {', '.join(held)} pending review{inform}")
        if review:
            parts.append(f"{'also review' if held else 'Review'} {', '.join(review)}")
        lines = ["; ".join(parts) + "."] if parts else []
    pulse = cyclophosphamide_last_pulse(ctx)
    if pulse is not None:
        lines.append(_pulse_line(record, pulse))
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


def lab_flagged_anc(ctx: RuleContext) -> LabFlag | None:
    """The latest ANC the lab flags critically low (clinical rules §2.3): severe even when its
    value cannot be converted ("<0.1" with no unit), never only a data-quality note."""
    k = ctx.knowledge
    return ctx.record.critical_low_flag(
        "anc", bool(k.settings["preliminary_critical_results"]), k.threshold("current_days")
    )


def _drug_review_sources(ctx: RuleContext, pulse: datetime | None) -> list[str]:
    """The labels and papers behind the drug lines: the hydroxychloroquine label when the card
    names it for review, rituximab late-onset neutropenia when named, the cyclophosphamide
    label for a recent pulse."""
    on_hcq = ctx.record.takes("hydroxychloroquine")
    sources = ["label_hydroxychloroquine"] if on_hcq else []
    recent = [e for e in ctx.record.immunosuppressants() if not e.ingredient.is_tier_a]
    if any(e.ingredient.id == "rituximab" for e in recent):
        sources.append("wolach_rituximab_lon_2010")
    return sources + (["label_cyclophosphamide"] if pulse else [])


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


def _preliminary_note(state: NeutrophilState) -> list[str]:
    used = [c for c in (state.anc, state.wbc) if c and c.is_preliminary]
    return ["Preliminary result: confirm with the lab."] if used else []


def _no_count_since_pulse(ctx: RuleContext) -> datetime | None:
    """The cyclophosphamide dose (<= 28 days ago) after which no WBC was drawn: a pre-pulse
    count does not describe the nadir (clinical rules §2.4 v3)."""
    record = ctx.record
    pulse = cyclophosphamide_last_pulse(ctx)
    if pulse is None:
        return None
    if any(c.time > pulse for c in record.series("wbc", include_preliminary=True)):
        return None
    return pulse


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
    k = ctx.knowledge
    found = fever(ctx.record, k)
    if found is None:
        return None
    state = critical_state(ctx.record, k)
    flag = lab_flagged_anc(ctx)
    fn_anc = ctx.threshold("febrile_neutropenia_anc")
    anc_below = state.anc is not None and state.anc.value < fn_anc
    anc_low = anc_below or flag is not None
    wbc_low = (
        state.anc_unknown
        and state.wbc is not None
        and state.wbc.value < ctx.threshold("anc_unknown_febrile_wbc")
    )
    pulse = _no_count_since_pulse(ctx)
    if not (anc_low or wbc_low or pulse):
        return None
    evidence = [f"Fever: {found.description}"] + _neutrophil_evidence(ctx, state)
    if anc_low:
        if flag is not None and not anc_below:
            decisive = f"lab flags the ANC critically low: {flag.received}"
            evidence.append(f"Lab critical-low flag on the ANC {flag.received} ({day(flag.time)})")
        else:
            decisive = f"ANC {_anc_value(state)} x10^9/L"
        summary = (
            f"Febrile neutropenia ({decisive}): evaluate now, cultures, antibiotics within 1 h."
        )
    elif wbc_low and state.wbc is not None and state.wbc.value < fn_anc:
        # v4: the ANC is below the WBC, so below the cut-off: febrile neutropenia, not
        # "possible"; a censored WBC keeps its sign ("WBC < 0.5", never "0.50").
        below = f"{state.wbc.value:g}" if state.wbc.comparator else fmt(state.wbc.value)
        decisive = f"ANC below {below} (WBC {state.wbc.bound}, no differential yet)"
        summary = (
            f"Febrile neutropenia: {decisive}: evaluate now, cultures, antibiotics within 1 h."
        )
    elif wbc_low and state.wbc is not None:
        decisive = f"WBC {state.wbc.bound} x10^9/L, ANC not yet available"
        summary = (
            f"Possible febrile neutropenia ({decisive}): evaluate now, CBC with differential stat."
        )
    else:
        assert pulse is not None  # one of the three causes holds (checked above)
        decisive = f"no count since the cyclophosphamide dose on {day(pulse)}"
        summary = (
            f"Possible febrile neutropenia: {decisive} (nadir day 7-14): CBC with "
            "differential stat."
        )
        evidence.append(
            f"Cyclophosphamide dose on {day(pulse)}; no WBC drawn since (a pre-pulse count does "
            "not describe the nadir)."
        )
    if state.anc and days_between(state.anc.time, ctx.record.now) > 1 and not pulse:
        age = int(days_between(state.anc.time, ctx.record.now))
        evidence.append(f"Last ANC {age} days ago: repeat CBC stat.")
    evidence += _absorbed_drug_lines(ctx)
    first = (
        "CBC with differential stat and emergency evaluation now: assess for sepsis, blood "
        "cultures."
        if pulse and not (anc_low or wbc_low)
        else "Emergency evaluation now: assess for sepsis, blood cultures."
    )
    finding = Finding(
        indicator="critical",
        summary=summary,
        evidence=evidence + _preliminary_note(state),
        recommendations=[
            first,
            "Empiric broad-spectrum antibiotics within 1 hour of triage per the local febrile "
            "neutropenia pathway (ASCO/IDSA 2018).",
            *_drugs_to_hold(ctx),
            "G-CSF is not routine: consider it with hematology only for high-risk features "
            "(ANC < 0.1, sepsis, pneumonia, invasive fungal infection, slow recovery)."
            + (
                " In SLE, flares and vasculitis after G-CSF are reported: lowest effective dose."
                if ctx.record.lupus
                else ""
            ),
        ],
        sources=[
            "asco_idsa_fn_2018",
            "idsa_fn_2010",
            "asco_gcsf_2015",
            *(["vasiliu_gcsf_sle_2006", "hellmich_gcsf_1999"] if ctx.record.lupus else []),
            *_drug_review_sources(ctx, pulse),
        ],
        orders=[
            SuggestedOrder("cbc", "stat", "Order CBC with differential (stat)", recommended=True),
            SuggestedOrder("hematology_referral", "urgent", "Refer to hematology (urgent)"),
        ],
        override_reasons=["already-addressed", "data-incorrect"],
        decisive=decisive,
    )
    return with_genotype_note(ctx, finding)


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
    k = ctx.knowledge
    state = critical_state(ctx.record, k)
    anc_severe = state.anc is not None and state.anc.value < ctx.threshold("severe_neutropenia_anc")
    flag = lab_flagged_anc(ctx)
    if not (anc_severe or state.anc_below_one_by_wbc or flag):
        return None
    threshold = ctx.threshold("severe_neutropenia_anc")
    pulse = cyclophosphamide_last_pulse(ctx)
    if flag is not None and not anc_severe:
        decisive = f"the lab flags the ANC critically low: {flag.received}"
        summary = f"{upper_first(decisive)}; confirm with the lab now, ask about fever."
        bound = f"Lab critical-low flag on the ANC {flag.received} ({day(flag.time)})."
    elif anc_severe:
        decisive = f"ANC {_anc_value(state)} x10^9/L"
        summary = f"Severe neutropenia ({decisive}): same-day review; ask about fever now."
        bound = f"Threshold: ANC < {threshold:g} x10^9/L (CTCAE v5 grade 4)."
    else:
        assert state.wbc is not None  # anc_below_one_by_wbc reads the WBC
        # The decisive value is the ANC bound (an order card quotes it: "Severe neutropenia
        # (ANC at most 0.90): do not start ..."); the summary says where it comes from.
        decisive = f"{_anc_bound_by_wbc(state.wbc)} x10^9/L"
        words = _anc_at_most_wbc(state.wbc)
        summary = f"{words}. Treat as severe neutropenia; ask about fever now."
        bound = f"{words} (x10^9/L): treated as ANC < {threshold:g} (CTCAE v5 grade 4)" + (
            "; below 0.1, profound agranulocytosis." if state.wbc.value < 0.1 else "."
        )
    found_fever = fever(ctx.record, k)
    fever_lines = [f"Fever: {found_fever.description}"] if found_fever else []
    if found_fever:
        summary = (
            f"Severe neutropenia ({decisive}) with fever: evaluate now, cultures, antibiotics "
            "within 1 h."
        )
    finding = Finding(
        indicator="critical",
        summary=summary,
        evidence=fever_lines
        + _neutrophil_evidence(ctx, state)
        + [bound]
        + _absorbed_drug_lines(ctx)
        + _preliminary_note(state),
        recommendations=[
            # With fever the patient needs the febrile-neutropenia pathway, not a fever check.
            "Emergency evaluation now: assess for sepsis, blood cultures; empiric antibiotics "
            "within 1 hour of triage (ASCO/IDSA 2018)."
            if found_fever
            else "Same-day clinician review; ask about fever now and give fever instructions.",
            *_drugs_to_hold(ctx),
            "Urgent CBC with differential and a manual blood smear.",
            "Hematology input today.",
        ],
        sources=["ctcae_v5", "idsa_fn_2010"]
        + (["asco_idsa_fn_2018"] if found_fever else [])
        + _drug_review_sources(ctx, pulse),
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
    k = ctx.knowledge
    state = neutrophil_state(ctx.record, k, include_preliminary=False)
    if state.anc is None:
        return None
    low, high = ctx.threshold("severe_neutropenia_anc"), ctx.threshold("moderate_neutropenia_anc")
    if not low <= state.anc.value < high:
        return None
    anc = _anc_value(state)
    fever_line = (
        f"Tell the patient to report a fever of {ctx.threshold('fever_sustained_cel'):.1f} °C "
        "or more at once."
    )
    drugs = tier_a_current(ctx.record)
    evidence = _neutrophil_evidence(ctx, state) + [
        f"Threshold: ANC {shown_limit(low)} to < {shown_limit(high, 1)} x10^9/L (CTCAE v5 grade 3)."
    ]
    summary = (
        f"Moderate neutropenia (ANC {anc} x10^9/L): repeat CBC with differential within 48-72 h."
    )
    recommendations = ["Repeat CBC with differential within 48-72 hours.", fever_line]
    sources = ["ctcae_v5"]
    carries: tuple[str, ...] = ()
    if drugs:
        carries = ("DRUG_CYTOPENIA_DOSE_REVIEW",)
        first = drugs[0].ingredient.display
        evidence += duffy_null_evidence(ctx.record) + drug_lines(ctx, drugs)
        evidence += transplant_evidence(ctx.record)
        label_advice = [
            e.ingredient.dose_review_advice for e in drugs if e.ingredient.dose_review_advice
        ]
        who = indication(ctx.record)
        if who == "transplant":
            # v4: an anti-rejection drug is never withheld on the card's own advice.
            advice = [transplant_line(immunosuppressant_names(ctx))]
            evidence += [f"Label advice for the transplant team: {line}" for line in label_advice]
            action = "discuss with the transplant team today"
        elif who == "rheumatic":
            advice = label_advice
            action = "reduce or withhold per label"
        else:
            advice = [
                *label_advice,
                f"Inform the prescribing team today: they decide whether to change {first}.",
            ]
            action = "inform the prescribing team today"
        advice += [text for _, _, text in dangerous_combinations(ctx.record, k)]
        lymphopenia = absorbed_lymphopenia(ctx, first)
        if lymphopenia is not None:
            carries += ("LYMPHOPENIA_PROFOUND",)
            evidence.append(lymphopenia.evidence)
            advice += lymphopenia.advice
            sources_lymphopenia = lymphopenia.sources
        else:
            sources_lymphopenia = []
        recommendations += advice + lupus_drug_advice(ctx.record)
        names = " and ".join(e.ingredient.display for e in drugs[:2])
        summary = f"Moderate neutropenia (ANC {anc}) on {names}: {action}; repeat CBC in 48-72 h."
        if len(summary) > MAX_SUMMARY:
            summary = (
                f"Moderate neutropenia (ANC {anc}) on {first}: {action}; repeat CBC in 48-72 h."
            )
        sources += drug_sources([e.ingredient for e in drugs]) + ["bsr_dmard_2017"]
        sources += sources_lymphopenia + hcq_source(recommendations)
        if ctx.record.duffy_null:
            sources += ["merz_duffy_2023", "hibbs_duffy_2025"]
    else:
        recommendations.insert(1, own_drugs_first(ctx))
    finding = Finding(
        decisive=f"ANC {state.anc.bound} x10^9/L",
        indicator="warning",
        summary=summary,
        evidence=evidence,
        recommendations=list(dict.fromkeys(recommendations))[:5],
        sources=list(dict.fromkeys(sources)),
        orders=[
            SuggestedOrder(
                "cbc", "urgent", "Order CBC with differential (within 48-72 h)", recommended=True
            )
        ],
        override_reasons=["already-addressed", "counts-reviewed"],
        carries=carries,
    )
    return with_genotype_note(ctx, finding)
