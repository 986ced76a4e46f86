"""What the critical neutropenia cards (FEBRILE_NEUTROPENIA, NEUTROPENIA_SEVERE) say about the
drugs: which to hold and which to review (clinical rules §1.6, v4 indication), a recent
cyclophosphamide pulse by its nadir (never "hold", v3), the dose-review drug lines they carry,
and the sources behind those lines."""

from __future__ import annotations

from datetime import datetime

from cds_service.days import day, days_between
from cds_service.record import PatientRecord
from cds_service.rules.base import RuleContext
from cds_service.rules.drugs import drug_lines
from cds_service.rules.indication import indication, transplant_line


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


def drugs_to_hold(ctx: RuleContext, pulse: datetime | None) -> list[str]:
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


def drug_review_sources(ctx: RuleContext, pulse_named: bool) -> list[str]:
    """The labels and papers behind the drug lines: the hydroxychloroquine label when the card
    names it for review, rituximab late-onset neutropenia when named, the cyclophosphamide
    label when the card is about a recent pulse."""
    on_hcq = ctx.record.takes("hydroxychloroquine")
    sources = ["label_hydroxychloroquine"] if on_hcq else []
    recent = [e for e in ctx.record.immunosuppressants() if not e.ingredient.is_tier_a]
    if any(e.ingredient.id == "rituximab" for e in recent):
        sources.append("wolach_rituximab_lon_2010")
    return sources + (["label_cyclophosphamide"] if pulse_named else [])


def absorbed_drug_lines(ctx: RuleContext) -> list[str]:
    """The dose-review card's drug content, carried by the critical card that absorbs it
    (clinical rules §3 precedence v3): each drug, its dose as prescribed, mg/kg/day, and an
    interacting drug."""
    drugs = [
        e
        for e in ctx.record.immunosuppressants()
        if e.ingredient.is_tier_a and (e.current or e.ingredient.id != "cyclophosphamide")
    ]  # a past cyclophosphamide pulse has its own nadir line
    return drug_lines(ctx, drugs)
