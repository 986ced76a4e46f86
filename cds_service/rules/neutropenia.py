"""Neutropenia rules NEUTROPENIA_SEVERE and NEUTROPENIA_MODERATE, and the words about the
neutrophil counts every neutropenia card shares (FEBRILE_NEUTROPENIA is in
febrile_neutropenia.py, the drug lines of the critical cards in neutropenia_drugs.py).

Each rule is two steps: `assess_*` decides from the record (which count, which cause, which
drugs) and returns a small frozen assessment or None; the rule then words that assessment
into the card. The wording helpers never decide whether a card fires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cds_service.days import day
from cds_service.record import Count, DrugExposure, LabFlag
from cds_service.rules.assessments import dangerous_combinations, fmt, tier_a_current, trend
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
from cds_service.rules.judgements import Fever, NeutrophilState
from cds_service.rules.neutropenia_drugs import (
    absorbed_drug_lines,
    cyclophosphamide_last_pulse,
    drug_review_sources,
    drugs_to_hold,
)

# ---------------------------------------------------------------------------------------------
# The neutrophil counts: the lab's critical-low flag, and the words every neutropenia card shares


def lab_flagged_anc(ctx: RuleContext) -> LabFlag | None:
    """The latest ANC the lab flags critically low (clinical rules §2.3): severe even when its
    value cannot be converted ("<0.1" with no unit), never only a data-quality note."""
    k = ctx.knowledge
    return ctx.record.critical_low_flag(
        "anc", bool(k.settings["preliminary_critical_results"]), k.threshold("current_days")
    )


def neutrophil_evidence(ctx: RuleContext, state: NeutrophilState) -> list[str]:
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


def anc_value(state: NeutrophilState) -> str:
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


def flag_line(flag: LabFlag) -> str:
    return f"Lab critical-low flag on the ANC {flag.received} ({day(flag.time)})"


def preliminary_note(state: NeutrophilState) -> list[str]:
    used = [c for c in (state.anc, state.wbc) if c and c.is_preliminary]
    return ["Preliminary result: confirm with the lab."] if used else []


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
    state = ctx.critical_neutrophils
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
    found_fever = ctx.fever
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
    severe = assess_severe_neutropenia(ctx)
    if severe is None:
        return None
    decisive, summary, basis = _severe_words(ctx, severe)
    if severe.fever:
        summary = (
            f"Severe neutropenia ({decisive}) with fever: evaluate now, cultures, antibiotics "
            "within 1 h."
        )
    finding = Finding(
        indicator="critical",
        summary=summary,
        evidence=([f"Fever: {severe.fever.description}"] if severe.fever else [])
        + neutrophil_evidence(ctx, severe.state)
        + [basis]
        + absorbed_drug_lines(ctx)
        + preliminary_note(severe.state),
        recommendations=[
            # With fever the patient needs the febrile-neutropenia pathway, not a fever check.
            "Emergency evaluation now: assess for sepsis, blood cultures; empiric antibiotics "
            "within 1 hour of triage (ASCO/IDSA 2018)."
            if severe.fever
            else "Same-day clinician review; ask about fever now and give fever instructions.",
            *drugs_to_hold(ctx, severe.pulse),
            "Urgent CBC with differential and a manual blood smear.",
            "Hematology input today.",
        ],
        sources=["ctcae_v5", "idsa_fn_2010"]
        + (["asco_idsa_fn_2018"] if severe.fever else [])
        + drug_review_sources(ctx, severe.pulse is not None),
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


def _severe_words(ctx: RuleContext, severe: SevereNeutropenia) -> tuple[str, str, str]:
    """(decisive value, summary without fever, the evidence line that says why it is severe)."""
    grade4 = f"{ctx.threshold('severe_neutropenia_anc'):g}"
    if severe.cause == "lab_flag" and severe.flag is not None:
        decisive = f"the lab flags the ANC critically low: {severe.flag.received}"
        summary = f"{upper_first(decisive)}; confirm with the lab now, ask about fever."
        return decisive, summary, f"{flag_line(severe.flag)}."
    if severe.cause == "anc":
        decisive = f"ANC {anc_value(severe.state)} x10^9/L"
        summary = f"Severe neutropenia ({decisive}): same-day review; ask about fever now."
        return decisive, summary, f"Threshold: ANC < {grade4} x10^9/L (CTCAE v5 grade 4)."
    wbc = severe.state.wbc
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
    state = ctx.neutrophils
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
    moderate = assess_moderate_neutropenia(ctx)
    if moderate is None:
        return None
    recommendations = _moderate_recommendations(ctx, moderate)
    carries = ("DRUG_CYTOPENIA_DOSE_REVIEW",) if moderate.drugs else ()
    finding = Finding(
        decisive=f"ANC {moderate.anc.bound} x10^9/L",
        indicator="warning",
        summary=_moderate_summary(moderate),
        evidence=_moderate_evidence(ctx, moderate),
        recommendations=list(dict.fromkeys(recommendations))[:5],
        sources=_moderate_sources(ctx, moderate, recommendations),
        orders=[
            SuggestedOrder(
                "cbc", "urgent", "Order CBC with differential (within 48-72 h)", recommended=True
            )
        ],
        override_reasons=["already-addressed", "counts-reviewed"],
        carries=carries + (("LYMPHOPENIA_PROFOUND",) if moderate.lymphopenia else ()),
    )
    return with_genotype_note(ctx, finding)


# What the card asks about the drugs, by who decides about them (v4, rules/indication.py).
_DRUG_ACTION: dict[Indication, str] = {
    "transplant": "discuss with the transplant team today",
    "rheumatic": "reduce or withhold per label",
    "unknown": "inform the prescribing team today",
}


def _moderate_summary(moderate: ModerateNeutropenia) -> str:
    anc = anc_value(moderate.state)
    if not moderate.drugs:
        return (
            f"Moderate neutropenia (ANC {anc} x10^9/L): repeat CBC with differential within "
            "48-72 h."
        )
    action = _DRUG_ACTION[moderate.who]
    names = " and ".join(e.ingredient.display for e in moderate.drugs[:2])
    summary = f"Moderate neutropenia (ANC {anc}) on {names}: {action}; repeat CBC in 48-72 h."
    if len(summary) > MAX_SUMMARY:
        first = moderate.drugs[0].ingredient.display
        summary = f"Moderate neutropenia (ANC {anc}) on {first}: {action}; repeat CBC in 48-72 h."
    return summary


def _label_advice(moderate: ModerateNeutropenia) -> list[str]:
    advice = [e.ingredient.dose_review_advice for e in moderate.drugs]
    return [line for line in advice if line]


def _moderate_evidence(ctx: RuleContext, moderate: ModerateNeutropenia) -> list[str]:
    low, high = ctx.threshold("severe_neutropenia_anc"), ctx.threshold("moderate_neutropenia_anc")
    lines = neutrophil_evidence(ctx, moderate.state) + [
        f"Threshold: ANC {shown_limit(low)} to < {shown_limit(high, 1)} x10^9/L (CTCAE v5 grade 3)."
    ]
    if not moderate.drugs:
        return lines
    lines += duffy_null_evidence(ctx.record) + drug_lines(ctx, list(moderate.drugs))
    lines += transplant_evidence(ctx.record)
    if moderate.who == "transplant":
        # The label's advice is for the transplant team, not the card's own advice.
        label = _label_advice(moderate)
        lines += [f"Label advice for the transplant team: {line}" for line in label]
    return lines + ([moderate.lymphopenia.evidence] if moderate.lymphopenia else [])


def _moderate_recommendations(ctx: RuleContext, moderate: ModerateNeutropenia) -> list[str]:
    """Repeat the CBC and the fever instruction; on a tier A drug the label action as the
    indication allows (v4: an anti-rejection drug is never withheld on the card's own advice),
    the dangerous combinations and the carried lymphopenia's advice; else the patient's own
    drugs first. Not yet de-duplicated or capped."""
    fever_line = (
        f"Tell the patient to report a fever of {ctx.threshold('fever_sustained_cel'):.1f} °C "
        "or more at once."
    )
    repeat = "Repeat CBC with differential within 48-72 hours."
    if not moderate.drugs:
        return [repeat, own_drugs_first(ctx), fever_line]
    if moderate.who == "transplant":
        advice = [transplant_line(immunosuppressant_names(ctx))]
    elif moderate.who == "rheumatic":
        advice = _label_advice(moderate)
    else:
        first = moderate.drugs[0].ingredient.display
        advice = [
            *_label_advice(moderate),
            f"Inform the prescribing team today: they decide whether to change {first}.",
        ]
    advice += [text for _, _, text in dangerous_combinations(ctx.record, ctx.knowledge)]
    advice += moderate.lymphopenia.advice if moderate.lymphopenia else []
    return [repeat, fever_line, *advice, *lupus_drug_advice(ctx.record)]


def _moderate_sources(
    ctx: RuleContext, moderate: ModerateNeutropenia, recommendations: list[str]
) -> list[str]:
    if not moderate.drugs:
        return ["ctcae_v5"]
    sources = ["ctcae_v5", *drug_sources([e.ingredient for e in moderate.drugs]), "bsr_dmard_2017"]
    sources += moderate.lymphopenia.sources if moderate.lymphopenia else []
    sources += hcq_source(recommendations)
    if ctx.record.duffy_null:
        sources += ["merz_duffy_2023", "hibbs_duffy_2025"]
    return list(dict.fromkeys(sources))
