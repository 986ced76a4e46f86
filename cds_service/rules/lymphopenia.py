"""Lymphopenia rules: LYMPHOPENIA_PROFOUND and LYMPHOPENIA_INFO."""

from __future__ import annotations

from cds_service.rules.assessments import fmt, trend
from cds_service.rules.base import Finding, RuleContext, SuggestedOrder


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
    (v3 wording).
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
        decisive=f"ALC {fmt(alc.value)} x10^9/L",
        rule="LYMPHOPENIA_PROFOUND",
        indicator="warning" if sle else "info",
        summary=f"Profound lymphopenia (ALC {fmt(alc.value)} x10^9/L): screen for infection, "
        "review immunosuppression.",
        evidence=evidence,
        recommendations=[
            "Screen for infection; lymphopenia < 1.0 x10^9/L is an independent risk factor for "
            "severe bacterial infection in SLE."
            if sle
            else "Screen for infection.",
            "Review the glucocorticoid dose and the intensity of immunosuppression.",
            _pjp_text(ctx),
        ],
        sources=[
            "martin_sle_lymphopenia_2017",
            "merayo_chalico_lymphopenia_2013",
            *(["label_methotrexate"] if on_methotrexate else []),
        ],
        orders=[SuggestedOrder("cbc", "routine", "Order CBC with differential")],
    )


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
        rule="LYMPHOPENIA_INFO",
        indicator="info",
        summary=f"Lymphopenia (ALC {fmt(alc.value)} x10^9/L), common in SLE: watch for infection.",
        evidence=[f"ALC {alc.describe()}", f"Diagnosis: {ctx.record.lupus.describe()}"],
        recommendations=[
            "Usually needs no treatment; it is a risk factor for severe bacterial "
            "infection, so keep infections in mind."
        ],
        sources=["carli_sle_leukopenia_2015", "martin_sle_lymphopenia_2017"],
        override_reasons=["already-addressed", "counts-reviewed"],
    )
