"""Leukopenia rules: LEUKOPENIA_MONITOR, REFRACTORY_LEUKOPENIA_REFERRAL,
STEROID_LEUKOCYTOSIS_NOTE."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.days import day, days_between
from cds_service.record import SAME_DRAW, Count, DrugExposure, LabFlag
from cds_service.record.model import LupusDiagnosis
from cds_service.rules.assessments import fmt, is_low_wbc, tier_a_current, trend
from cds_service.rules.base import Finding, RuleContext, SuggestedOrder, shown_limit, upper_first
from cds_service.rules.drugs import drug_lines, hcq_source, with_genotype_note
from cds_service.rules.indication import indication, transplant_evidence, transplant_line
from cds_service.rules.judgements import NeutrophilState

_WARNING_OR_CRITICAL = ("warning", "critical")


def leukopenia_monitor(ctx: RuleContext) -> Finding | None:
    """(a) Lupus, WBC 2.0 to < 4.0 (or < LLN), ANC >= 1.0 or unknown, no current tier A drug
    -> info: usually benign, mostly lymphopenia (seed001; Carli et al. 2015); the work-up is an
    expert summary (seed001/002); hydroxychloroquine for every lupus patient (EULAR 2023).
    (b) Any in-scope patient, WBC 1.0 to < 2.0 with ANC unknown and no other warning or
    critical cytopenia card -> warning: the ANC may be < 0.5.
    Any warning or critical cytopenia card or DRUG_CYTOPENIA_DOSE_REVIEW suppresses (a).
    "Keep hydroxychloroquine" is said only to a patient taking it (v3 wording)."""
    state = ctx.neutrophils
    anc_unknown = assess_severe_anc_unknown(ctx, state)
    if anc_unknown is not None:
        if ctx.has_fired_family("cytopenia", indicators=_WARNING_OR_CRITICAL):
            return None  # (b) adds nothing to a warning or critical cytopenia card
        return _severe_anc_unknown_finding(ctx, anc_unknown)
    lupus = assess_lupus_leukopenia(ctx, state)
    return _lupus_leukopenia_finding(ctx, lupus) if lupus is not None else None


@dataclass(frozen=True)
class SevereLeukopeniaAncUnknown:
    """LEUKOPENIA_MONITOR (b): WBC 1.0 to < 2.0, or a WBC the lab flags critically low, with
    no ANC from its draw: the ANC may be below 0.5."""

    flag: LabFlag | None  # the lab's critical-low flag: decides even when unconvertible
    wbc: Count | None


def assess_severe_anc_unknown(
    ctx: RuleContext, state: NeutrophilState
) -> SevereLeukopeniaAncUnknown | None:
    flag = _lab_flagged_wbc_anc_unknown(ctx)
    wbc = state.wbc
    # Below the grade 4 limit the WBC bounds the ANC: NEUTROPENIA_SEVERE's case, not this one.
    low, high = ctx.threshold("grade4_leukopenia_wbc"), ctx.threshold("severe_leukopenia_wbc")
    severe = wbc is not None and low <= wbc.value < high and state.anc_unknown
    if flag is None and not severe:
        return None
    return SevereLeukopeniaAncUnknown(flag, wbc)


def _severe_anc_unknown_finding(ctx: RuleContext, found: SevereLeukopeniaAncUnknown) -> Finding:
    flag, wbc = found.flag, found.wbc
    if flag is not None:
        summary = (
            f"The lab flags the WBC critically low ({flag.received}), ANC unknown: CBC "
            "with manual differential today."
        )
        evidence = [f"Lab critical-low flag on the WBC {flag.received} ({day(flag.time)})"]
        decisive = f"WBC {flag.received} (lab-flagged critically low)"
    else:
        assert wbc is not None  # without a flag, the assessment read the WBC
        decisive = f"WBC {wbc.bound} x10^9/L, ANC unknown"
        summary = (
            f"Severe leukopenia (WBC {wbc.bound} x10^9/L), ANC unknown: CBC with "
            "manual differential today."
        )
        evidence = _wbc_evidence(ctx, wbc)
    evidence.append(
        "No differential from this draw: the ANC may be below "
        f"{shown_limit(ctx.threshold('severe_neutropenia_anc'))} x10^9/L."
    )
    return Finding(
        decisive=decisive,
        indicator="warning",
        summary=summary,
        evidence=evidence,
        recommendations=[
            "CBC with manual differential and a blood smear today.",
            "Ask about fever now.",
        ],
        sources=["ctcae_v5"],
        orders=[
            SuggestedOrder(
                "cbc", "stat", "Order CBC with differential and smear (stat)", recommended=True
            )
        ],
    )


@dataclass(frozen=True)
class LupusLeukopenia:
    """LEUKOPENIA_MONITOR (a): lupus, WBC 2.0 to < 4.0 (or < LLN), ANC >= 1.0 or unknown,
    no current tier A drug, no other cytopenia card."""

    wbc: Count
    anc: Count | None  # None: no differential from this draw
    lupus: LupusDiagnosis
    on_hydroxychloroquine: bool


def assess_lupus_leukopenia(ctx: RuleContext, state: NeutrophilState) -> LupusLeukopenia | None:
    record, wbc = ctx.record, state.wbc
    if wbc is None or record.lupus is None or tier_a_current(record):
        return None
    if "medications" in record.unreadable:
        return None  # (a) says "no tier A drug": not known when medications were not read
    if wbc.value < ctx.threshold("severe_leukopenia_wbc") or not is_low_wbc(wbc, ctx.knowledge):
        return None
    if state.anc is not None and state.anc.value < ctx.threshold("moderate_neutropenia_anc"):
        return None
    if ctx.has_fired_family("cytopenia", indicators=_WARNING_OR_CRITICAL) or ctx.has_fired(
        "DRUG_CYTOPENIA_DOSE_REVIEW"
    ):
        return None
    anc = state.anc if state.anc and not state.anc_unknown else None
    return LupusLeukopenia(wbc, anc, record.lupus, record.takes("hydroxychloroquine"))


def _lupus_leukopenia_finding(ctx: RuleContext, found: LupusLeukopenia) -> Finding:
    wbc, lupus = found.wbc, found.lupus
    evidence = _wbc_evidence(ctx, wbc)
    evidence.append(
        f"ANC {found.anc.describe()}"
        if found.anc is not None
        else "ANC unknown: no differential from this draw."
    )
    recommendations = [
        "Usually benign in lupus and mostly lymphopenia: repeat the CBC with differential and "
        "compare with earlier counts; manual smear if new or unexplained.",
        "Rule out B12 or folate deficiency, viral infection and drugs.",
        "Check disease activity: C3, C4 and anti-dsDNA.",
        (
            "Keep hydroxychloroquine (EULAR 2023: for every lupus patient); mild"
            if found.on_hydroxychloroquine
            else "Mild"
        )
        + " isolated leukopenia usually needs no added immunosuppression.",
    ]
    if lupus.kind == "drug-induced":
        recommendations.append(
            "Drug-induced lupus usually remits once the culprit drug is stopped."
        )
    if lupus.kind == "unspecified":
        evidence.append(
            "The lupus type is not specified in the record (coded as lupus erythematosus)."
        )
    return Finding(
        decisive=f"WBC {wbc.bound} x10^9/L",
        indicator="info",
        summary=f"Leukopenia (WBC {wbc.bound} x10^9/L) in "
        f"{_lupus_short(lupus.kind, lupus.suspected)}: repeat CBC with differential.",
        evidence=evidence,
        recommendations=recommendations,
        sources=["carli_sle_leukopenia_2015", *hcq_source(recommendations)],
        orders=[SuggestedOrder("cbc", "routine", "Order CBC with differential", recommended=True)],
    )


def _lab_flagged_wbc_anc_unknown(ctx: RuleContext) -> LabFlag | None:
    """A WBC the lab flags critically low with no ANC from its draw or later (clinical rules
    §2.3): LEUKOPENIA_MONITOR (b) even when the value cannot be converted."""
    days = ctx.threshold("current_days")
    flag = ctx.record.critical_low_flag("wbc", False, days)
    if flag is None:
        return None
    anc = ctx.record.latest("anc", max_age_days=days)
    if anc is not None and anc.time >= flag.time - SAME_DRAW:
        return None
    return flag


def _lupus_short(kind: str, suspected: bool) -> str:
    name = {"sle": "SLE", "drug-induced": "drug-induced lupus", "unspecified": "lupus"}[kind]
    return f"suspected {name}" if suspected else name


def _wbc_evidence(ctx: RuleContext, wbc: Count) -> list[str]:
    limit = max(ctx.threshold("leukopenia_wbc"), wbc.low or 0.0)
    lines = [f"WBC {wbc.describe()}; lower limit {fmt(limit)} x10^9/L"]
    earlier = trend(ctx.record, "wbc")
    if earlier:
        lines.append(f"Earlier WBC: {earlier}")
    if ctx.record.lupus:
        lines.append(f"Diagnosis: {ctx.record.lupus.describe()}")
    return lines


def _is_severe(count: Count, ctx: RuleContext) -> bool:
    limit = ctx.threshold("refractory_wbc" if count.analyte == "wbc" else "refractory_anc")
    return count.value < limit


def refractory_leukopenia_referral(ctx: RuleContext) -> Finding | None:
    """SLE on >= 2 active moieties among tier A/B drugs (current or recent) with WBC < 2.0 or
    ANC < 0.5 on >= 2 results >= 7 days apart within 60 days, the latest still low: persistent
    severe leukopenia on >= 2 immunosuppressants. Drug toxicity first; rituximab as a treatment
    only as reported in a case report (Hanai et al. 2025). It absorbs NEUTROPENIA_MODERATE and
    DRUG_CYTOPENIA_DOSE_REVIEW (v3 precedence), so it runs before them, carries the drug lines
    (dose as prescribed, mg/kg/day, interacting drug) and names the patient's own drugs.

    (v4) "Hold or reduce" names only current tier A drugs; a drug given in the past (a
    rituximab infusion 150 days ago) is named as a suspect by its last dose ("do not re-dose
    until the counts recover"). With rituximab in the last 12 months the card neither cites the
    rituximab case report nor offers rituximab as a treatment: its source is the review of
    rituximab-associated late-onset neutropenia (Wolach et al. 2010).

    Choices where the spec is silent: "persistent" follows §2.4, so a recovered value between
    the two low results breaks the run. Rituximab and cyclophosphamide, given as infusions or
    pulses, are always named by their last dose (never "hold or reduce"), current order or not;
    current tier B drugs get "ask the rheumatologist about ..." (one verb per list, v4 wording).
    For a transplant recipient (rules/indication.py) no current drug is held or reduced on the
    card's own advice: "discuss with the transplant team today before changing tacrolimus /
    mycophenolate mofetil" (v4 transplant wording), the suspects given in the past still named.
    """
    found = assess_refractory_leukopenia(ctx)
    if found is None:
        return None
    return with_genotype_note(ctx, _refractory_finding(ctx, found))


@dataclass(frozen=True)
class RefractoryLeukopenia:
    """Persistent severe leukopenia in SLE on two or more immunosuppressant moieties (a
    setting, `refractory_min_moieties`)."""

    drugs: tuple[DrugExposure, ...]  # the tier A/B drugs, current or recent
    first: Count  # the run of severe values: its first and its latest draw
    latest: Count
    anc: Count | None  # the current ANC when known and not itself the latest of the run
    critical: bool  # ANC < 0.5 or WBC < 1.0 now
    recent_rituximab: bool  # rituximab in the last 12 months: a suspect, not a treatment

    @property
    def decisive(self) -> str:
        return f"{self.latest.analyte.upper()} {self.latest.bound} x10^9/L"


def assess_refractory_leukopenia(ctx: RuleContext) -> RefractoryLeukopenia | None:
    record = ctx.record
    if record.lupus is None:
        return None
    drugs = record.immunosuppressants()
    if len({e.ingredient.moiety for e in drugs}) < ctx.threshold("refractory_min_moieties"):
        return None
    since = record.now - timedelta(days=ctx.threshold("refractory_window_days"))
    run = _persistent_low_run(ctx, since)
    if run is None:
        return None
    latest, first = run
    state = ctx.neutrophils
    critical = (
        state.anc is not None and state.anc.value < ctx.threshold("severe_neutropenia_anc")
    ) or (state.wbc is not None and state.wbc.value < ctx.threshold("grade4_leukopenia_wbc"))
    shown_anc = state.anc is not None and latest.analyte != "anc" and not state.anc_unknown
    rituximab = record.exposure("rituximab")
    return RefractoryLeukopenia(
        drugs=tuple(drugs),
        first=first,
        latest=latest,
        anc=state.anc if shown_anc else None,
        critical=critical,
        recent_rituximab=rituximab is not None and rituximab.current_or_recent,
    )


def _refractory_recommendations(ctx: RuleContext, found: RefractoryLeukopenia) -> list[str]:
    """Drug toxicity first, then the work-up; rituximab as a treatment only when it is not
    itself the suspect (v4)."""
    then = [
        "Exclude infection, B12/folate deficiency and marrow disease (smear, marrow "
        "examination, anti-neutrophil antibodies)."
    ]
    if not found.recent_rituximab:
        then.append(
            "Only when drug toxicity is excluded: one case report describes recovery with "
            "rituximab 375 mg/m2 weekly x 4 (Hanai et al. 2025)."
        )
    then.append("Urgent joint hematology and rheumatology review throughout.")
    return _drug_toxicity_lines(ctx, list(found.drugs))[: 5 - len(then)] + then


def _refractory_finding(ctx: RuleContext, found: RefractoryLeukopenia) -> Finding:
    record, first, latest = ctx.record, found.first, found.latest
    assert record.lupus is not None  # the assessment requires lupus
    at_least = shown_limit(ctx.threshold("refractory_min_moieties"))
    return Finding(
        indicator="critical" if found.critical else "warning",
        summary=f"Persistent severe leukopenia on {at_least} or more immunosuppressants "
        f"({found.decisive}): joint hematology-rheumatology review.",
        evidence=[
            f"First low: {first.analyte.upper()} {first.describe()}",
            f"Latest: {latest.analyte.upper()} {latest.describe()}",
            *([f"ANC {found.anc.describe()}"] if found.anc is not None else []),
            *drug_lines(ctx, list(found.drugs)),
            f"Diagnosis: {record.lupus.describe()}",
            *transplant_evidence(record),
        ],
        recommendations=_refractory_recommendations(ctx, found),
        # With rituximab the suspect, the card cites no rituximab-as-treatment report (v4).
        sources=["wolach_rituximab_lon_2010"] if found.recent_rituximab else ["hanai_2025"],
        orders=[
            SuggestedOrder(
                "hematology_referral", "urgent", "Refer to hematology (urgent)", recommended=True
            ),
            SuggestedOrder("cbc", "urgent", "Order CBC with differential and smear"),
        ],
        evidence_level=""
        if found.recent_rituximab
        else "The rituximab option is reported in a single case report.",
        decisive=found.decisive,
    )


def _last_given(exposure: DrugExposure) -> datetime | None:
    """The last dose date (§2.1): the latest administration, else the newest record's end or
    start."""
    if exposure.last_dose is not None:
        return exposure.last_dose
    dates = [d for r in exposure.records for d in (r.end, r.start) if d is not None]
    return max(dates) if dates else None


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _drug_toxicity_lines(ctx: RuleContext, drugs: list[DrugExposure]) -> list[str]:
    """Drug toxicity first (v4 wording): "hold or reduce" names only current tier A drugs;
    the current tier B drugs get their own verb ("ask the rheumatologist about tacrolimus");
    rituximab and the drugs given in the past are suspects named by their last dose ("do not
    re-dose until counts recover"). A recent cyclophosphamide pulse is named the same way (its
    nadir), never "hold"."""
    record = ctx.record
    current = [e for e in drugs if e.current and e.ingredient.id not in _GIVEN_AS_DOSES]
    if indication(record) == "transplant" and current:
        # v4: a transplant recipient's drugs may be anti-rejection drugs: never "hold or
        # reduce" on the card's own advice; the transplant team decides, today.
        lines = [transplant_line([e.ingredient.display for e in current])]
    else:
        hold = [e.ingredient.display for e in current if e.ingredient.is_tier_a]
        ask = [e.ingredient.display for e in current if not e.ingredient.is_tier_a]
        parts = []
        if hold:
            parts.append(f"hold or reduce {_joined(hold)} with the rheumatologist")
        if ask:
            parts.append(f"ask the rheumatologist about {_joined(ask)}")
        lines = [f"Drug toxicity first: {'; '.join(parts)}."] if parts else []
    for exposure in drugs:
        if exposure in current:
            continue
        given = _last_given(exposure)
        when = f"last {'infusion' if exposure.ingredient.id == 'rituximab' else 'dose'} " + (
            f"{day(given)} ({int(days_between(given, record.now))} days ago)"
            if given
            else "unknown"
        )
        if exposure.ingredient.id == "rituximab":
            lines.append(
                f"Rituximab, {when}: suspect rituximab-associated late-onset neutropenia; do "
                "not re-dose until the counts recover."
            )
        else:
            lines.append(
                f"{upper_first(exposure.ingredient.display)}, {when}: a suspect; do not "
                "re-dose until the counts recover."
            )
    if not lines:
        lines.append("Drug toxicity first: review every marrow-toxic drug with the rheumatologist.")
    return lines


# Drugs given as infusions or pulses: named by their last dose, never "hold or reduce".
_GIVEN_AS_DOSES = ("rituximab", "cyclophosphamide")


def _persistent_low_run(ctx: RuleContext, since: datetime) -> tuple[Count, Count] | None:
    """(latest, earliest) of an unbroken run of severe WBC/ANC values within the window whose
    ends are >= 7 days apart and whose latest draw is still low."""
    draws = sorted(
        (c for analyte in ("wbc", "anc") for c in ctx.record.series(analyte) if c.time >= since),
        key=lambda c: c.time,
        reverse=True,
    )
    if not draws or not _is_severe(draws[0], ctx):
        return None
    latest = draws[0]
    earliest = latest
    for count in draws[1:]:
        if not _is_severe(count, ctx):
            # A normal value of the same analyte ends the run (the other analyte of the same
            # draw may still be low).
            if count.analyte == "wbc" or not any(
                c.analyte == "wbc" and _is_severe(c, ctx) and abs(c.time - count.time) <= SAME_DRAW
                for c in draws
            ):
                break
            continue
        earliest = count
    if days_between(earliest.time, latest.time) >= ctx.threshold("persistent_min_days_apart"):
        return latest, earliest
    return None


def steroid_leukocytosis_note(ctx: RuleContext) -> Finding | None:
    """On a systemic glucocorticoid with WBC above the lab's upper limit (else 11.0): steroid
    leukocytosis can mask infection (seed003). Never a leukopenia card. Optional (setting)."""
    if not ctx.knowledge.settings["steroid_leukocytosis_note_enabled"]:
        return None
    steroids = ctx.record.current_drugs("glucocorticoid")
    wbc = ctx.record.latest("wbc", max_age_days=ctx.threshold("current_days"))
    if not steroids or wbc is None:
        return None
    upper = wbc.high if wbc.high is not None else ctx.threshold("leukocytosis_wbc")
    if wbc.value <= upper:
        return None
    return Finding(
        indicator="info",
        summary=f"WBC {fmt(wbc.value)} x10^9/L on glucocorticoids: steroid leukocytosis can mask "
        "infection; look for it if unwell.",
        evidence=[
            f"WBC {wbc.describe()}; upper limit {fmt(upper)} x10^9/L",
            "Glucocorticoids: " + ", ".join(e.describe() for e in steroids),
        ],
        recommendations=[
            "Glucocorticoids raise the neutrophil count; interpret a high WBC "
            "with the clinical picture and look for infection if unwell."
        ],
        sources=["shoenfeld_steroid_leukocytosis_1981"],
        override_reasons=["already-addressed"],
    )
