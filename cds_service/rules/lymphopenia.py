"""Lymphopenia rules: LYMPHOPENIA_PROFOUND and LYMPHOPENIA_INFO, and the grading of a
lymphopenia episode on a tier A drug that DRUG_CYTOPENIA_DOSE_REVIEW uses when it absorbs
LYMPHOPENIA_PROFOUND (clinical rules §3 wording v4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cds_service.days import day, days_between
from cds_service.record import Count, PatientRecord
from cds_service.rules.assessments import trend
from cds_service.rules.base import Finding, Indicator, RuleContext, SuggestedOrder, shown_period

# The sources of the profound-lymphopenia advice (infection risk in SLE, seed000's references).
LYMPHOPENIA_SOURCES = ["martin_sle_lymphopenia_2017", "merayo_chalico_lymphopenia_2013"]


@dataclass(frozen=True)
class LymphopeniaEpisode:
    """How an ALC < 0.5 on a tier A drug is graded (clinical rules §3 wording v4)."""

    indicator: Indicator
    why: str  # "a new episode: ...", "a fall of 35% from 0.62 on ...", "stable: ..."
    short: str  # for the summary: "new episode", "fall of 35%", "below 0.2", "not yet stable"
    stable: bool
    last_three: str  # the last three ALC values with dates, newest first


def _last_three(record: PatientRecord) -> str:
    values = record.series("alc")[:3]
    return ", ".join(f"{c.bound} on {day(c.time)}" for c in values)


def lymphopenia_episode(ctx: RuleContext, alc: Count) -> LymphopeniaEpisode:
    """Warning at a new episode (the first ALC < 0.5 after a value >= 0.5 in the last 12
    months, or no earlier ALC in them), after a fall >= 30% from the previous value, or with an
    ALC < 0.2; info when every ALC of at least the last 3 months was < 0.5 with no such fall
    ("stable"). This grading is the service's own rule: BSR/BHPR 2017 gives the 0.5 action
    value, not episodes. It keeps a transplant recipient with a chronic, stable ALC around 0.4
    from being told at every visit to withhold the anti-rejection drug.

    Choices where the spec is silent: an episode still shorter than 3 months with no fall is a
    warning (not yet known to be stable); the values compared are final results (a
    preliminary ALC is not a trend); a censored "<0.5" is judged as its bound."""
    limit = ctx.threshold("dose_review_alc")
    since = alc.time - timedelta(days=ctx.threshold("lymphopenia_episode_days"))
    earlier = [c for c in ctx.record.series("alc") if since <= c.time < alc.time]
    last_three = _last_three(ctx.record)

    def warning(why: str, short: str) -> LymphopeniaEpisode:
        return LymphopeniaEpisode("warning", why, short, False, last_three)

    very_low = ctx.threshold("lymphopenia_very_low_alc")
    if alc.value < very_low:
        return warning(f"ALC below {very_low:g}", f"below {very_low:g}")
    if not earlier:
        months = shown_period(ctx.threshold("lymphopenia_episode_days"))
        return warning(f"new episode (no earlier ALC in the last {months})", "new episode")
    previous = earlier[0]
    if previous.value >= limit:
        return warning(
            f"new episode (the first ALC below {limit:g} after {previous.bound} on "
            f"{day(previous.time)})",
            "new episode",
        )
    fall = (previous.value - alc.value) / previous.value if previous.value > 0 else 0.0
    if fall >= ctx.threshold("lymphopenia_fall_fraction") - 1e-9:
        return warning(
            f"fallen {fall:.0%} from {previous.bound} on {day(previous.time)}",
            f"fall of {fall:.0%}",
        )
    run = [alc]
    for count in earlier:
        if count.value >= limit:
            break
        run.append(count)
    start = run[-1].time
    stable_days = ctx.threshold("stable_days")
    if days_between(start, alc.time) >= stable_days:
        return LymphopeniaEpisode(
            "info",
            f"stable (every ALC below {limit:g} since {day(start)}, no fall of "
            f"{ctx.threshold('lymphopenia_fall_fraction'):.0%} or more)",
            f"below {limit:g} since {day(start)}",
            True,
            last_three,
        )
    return warning(
        f"not yet known to be stable (below {limit:g} since {day(start)}, less than "
        f"{shown_period(stable_days)})",
        "not yet known to be stable",
    )


def lymphopenia_advice(ctx: RuleContext, brief: bool = False) -> list[str]:
    """What LYMPHOPENIA_PROFOUND advises, also carried (`brief`: without the SLE risk sentence)
    by the dose-review card that absorbs it: infection screen, glucocorticoids and
    immunosuppression, PJP prophylaxis."""
    sle = ctx.record.lupus is not None and not brief
    return [
        "Screen for infection; lymphopenia < 1.0 x10^9/L is an independent risk factor for "
        "severe bacterial infection in SLE."
        if sle
        else "Screen for infection.",
        "Review the glucocorticoid dose and the intensity of immunosuppression.",
        _pjp_text(ctx),
    ]


def _pjp_text(ctx: RuleContext) -> str:
    if ctx.record.takes("methotrexate"):
        return (
            "Pneumocystis (PJP) prophylaxis case by case: the patient takes methotrexate, "
            "and co-trimoxazole (TMP-SMX) adds marrow toxicity to it, so agree the agent "
            "with the prescriber."
        )
    return "Pneumocystis (PJP) prophylaxis case by case (co-trimoxazole is the usual agent)."


def lymphopenia_profound(ctx: RuleContext) -> Finding | None:
    """Latest ALC < 0.5 x10^9/L (seed000: profound lymphopenia, possible primary immune
    deficiency subset). Warning in SLE; info for other in-scope patients, only for a new
    episode (first ALC < 0.5 after a value >= 0.5).

    Choice where the spec is silent: with no earlier ALC at all, the low value is a new
    episode (it has never been shown), so the info card fires. "In SLE" is said only in SLE
    (v3 wording). v4: on a current tier A drug the dose-review card absorbs this one (catalogue
    precedence) and carries its advice, graded by episode.
    """
    record = ctx.record
    on_methotrexate = record.takes("methotrexate")
    alc = record.latest("alc", max_age_days=ctx.threshold("current_days"))
    limit = ctx.threshold("profound_lymphopenia_alc")
    if alc is None or alc.value >= limit:
        return None
    sle = record.lupus is not None
    if not sle:
        earlier = record.series("alc")[1:2]
        if earlier and earlier[0].value < limit:
            return None  # a continuing episode: already shown when it began
    evidence = [f"ALC {alc.describe()} ({alc.method})"]
    if trend(record, "alc"):
        evidence.append(f"Earlier ALC: {trend(record, 'alc')}")
    if record.lupus:
        evidence.append(f"Diagnosis: {record.lupus.describe()}")
    glucocorticoids = record.current_drugs("glucocorticoid")
    if glucocorticoids:
        evidence.append("Glucocorticoids: " + ", ".join(e.describe() for e in glucocorticoids))
    evidence.append(f"Threshold: ALC < {limit:g} x10^9/L")
    return Finding(
        decisive=f"ALC {alc.bound} x10^9/L",
        indicator="warning" if sle else "info",
        summary=f"Profound lymphopenia (ALC {alc.bound} x10^9/L): screen for infection, "
        "review immunosuppression.",
        evidence=evidence,
        recommendations=_with_transplant_team(ctx, lymphopenia_advice(ctx)),
        sources=[*LYMPHOPENIA_SOURCES, *(["label_methotrexate"] if on_methotrexate else [])],
        orders=[SuggestedOrder("cbc", "routine", "Order CBC with differential")],
    )


def _with_transplant_team(ctx: RuleContext, advice: list[str]) -> list[str]:
    """A transplant recipient's immunosuppression is reviewed with the transplant team (v4:
    never changed on the card's own advice)."""
    if not ctx.record.transplant:
        return advice
    return [
        line.replace(
            "intensity of immunosuppression.",
            "intensity of immunosuppression with the transplant team.",
        )
        for line in advice
    ]


def lymphopenia_info(ctx: RuleContext) -> Finding | None:
    """SLE and ALC 0.5 to < 1.0 x10^9/L: common in SLE and a risk factor for severe bacterial
    infection; usually no treatment (seed000, seed001). Off by default (setting)."""
    if not ctx.knowledge.settings["lymphopenia_info_enabled"] or ctx.record.lupus is None:
        return None
    alc = ctx.record.latest("alc", max_age_days=ctx.threshold("current_days"))
    if alc is None:
        return None
    if (
        not ctx.threshold("profound_lymphopenia_alc")
        <= alc.value
        < ctx.threshold("lymphopenia_alc")
    ):
        return None
    return Finding(
        indicator="info",
        summary=f"Lymphopenia (ALC {alc.bound} x10^9/L), common in SLE: watch for infection.",
        evidence=[f"ALC {alc.describe()}", f"Diagnosis: {ctx.record.lupus.describe()}"],
        recommendations=[
            "Usually needs no treatment; it is a risk factor for severe bacterial "
            "infection, so keep infections in mind."
        ],
        sources=["carli_sle_leukopenia_2015", "martin_sle_lymphopenia_2017"],
        override_reasons=["already-addressed", "counts-reviewed"],
    )
