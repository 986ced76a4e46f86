"""The rule catalogue (clinical rules §3): one pure function per rule id, run in order, with
precedence applied as each rule can see the findings of the rules before it.

Two steps follow the rules (v3):
- fever changes every other cytopenia card (§2.4 "fever with other cytopenia"): it leads with
  "Febrile now: same-day assessment and CBC with differential stat" and is at least a warning;
- at most 3 cards per response (issue 11 "cards read in seconds"): by indicator (critical,
  warning, info), then catalogue order. The catalogue order puts the problem-level cards
  first, so what is dropped is the lowest-priority info or warning card of a crowded answer.

"Clinical rules §N" in this package refers to docs/clinical-rules.md, the clinical contract as
this service implements it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cds_service.knowledge import Knowledge
from cds_service.protocol.hooks import ORDER_HOOKS
from cds_service.record import PatientRecord
from cds_service.rules.assessments import fever
from cds_service.rules.base import (
    FEBRILE_NOW,
    MAX_SUMMARY,
    Finding,
    RuleContext,
    SuggestedOrder,
)
from cds_service.rules.drugs import drug_cytopenia_dose_review
from cds_service.rules.leukopenia import (
    leukopenia_monitor,
    refractory_leukopenia_referral,
    steroid_leukocytosis_note,
)
from cds_service.rules.lymphopenia import lymphopenia_info, lymphopenia_profound
from cds_service.rules.monitoring import cbc_stale, data_quality
from cds_service.rules.neutropenia import (
    febrile_neutropenia,
    neutropenia_moderate,
    neutropenia_severe,
)
from cds_service.rules.orders import (
    gcsf_caution,
    order_myelotoxic_low_counts,
    order_no_recent_cbc,
)
from cds_service.rules.pharmacogenomics import thiopurine_pgx

Rule = Callable[[RuleContext], Finding | None]

# Order matters: a rule may read the findings of the rules above it (precedence, §3).
RULES: dict[str, Rule] = {
    "FEBRILE_NEUTROPENIA": febrile_neutropenia,
    "NEUTROPENIA_SEVERE": neutropenia_severe,
    # Before the moderate and dose-review cards, which it absorbs (v3 precedence).
    "REFRACTORY_LEUKOPENIA_REFERRAL": refractory_leukopenia_referral,
    "NEUTROPENIA_MODERATE": neutropenia_moderate,
    "DRUG_CYTOPENIA_DOSE_REVIEW": drug_cytopenia_dose_review,
    "ORDER_MYELOTOXIC_LOW_COUNTS": order_myelotoxic_low_counts,
    "ORDER_NO_RECENT_CBC": order_no_recent_cbc,
    "GCSF_CAUTION": gcsf_caution,
    "LYMPHOPENIA_PROFOUND": lymphopenia_profound,
    "LYMPHOPENIA_INFO": lymphopenia_info,
    "LEUKOPENIA_MONITOR": leukopenia_monitor,
    "THIOPURINE_PGX": thiopurine_pgx,
    "CBC_STALE": cbc_stale,
    "DATA_QUALITY": data_quality,
    "STEROID_LEUKOCYTOSIS_NOTE": steroid_leukocytosis_note,
}

# Rules that speak even when the patient's scope cannot be judged (missing data).
_ALWAYS = {"DATA_QUALITY"}
# On order hooks a draft for a tier A/B drug brings the patient in scope for these (clinical
# rules §3); the patient-state rules keep the §2.2 scope, as a draft is not exposure.
_ORDER_SCOPED = {
    "ORDER_MYELOTOXIC_LOW_COUNTS",
    "ORDER_NO_RECENT_CBC",
    "GCSF_CAUTION",
    "THIOPURINE_PGX",
    "DATA_QUALITY",
}


MAX_CARDS = 3
_PRIORITY = {"critical": 0, "warning": 1, "info": 2}
# Cards that fever rewrites (§2.4): every cytopenia, dose-review or stale-CBC card other than
# the febrile neutropenia card itself.
_FEVER_LEADS = (
    "NEUTROPENIA_MODERATE",
    "DRUG_CYTOPENIA_DOSE_REVIEW",
    "ORDER_MYELOTOXIC_LOW_COUNTS",
    "LYMPHOPENIA_PROFOUND",
    "LYMPHOPENIA_INFO",
    "REFRACTORY_LEUKOPENIA_REFERRAL",
    "LEUKOPENIA_MONITOR",
    "CBC_STALE",
)


def _febrile_now(finding: Finding, fever_text: str) -> None:
    """Lead the card with the fever (it changes what the count means) and make it at least a
    warning. Left alone: a card that already leads with it (e.g. a febrile CBC_STALE), a
    critical card (fever with ANC < 1.0 or WBC < 2.0 already gives FEBRILE_NEUTROPENIA, and the
    critical card's own summary, e.g. "cancel or defer", must stay), and a card that is not
    about the counts (a dangerous combination with normal counts)."""
    if (
        finding.summary.startswith(FEBRILE_NOW)
        or finding.indicator == "critical"
        or not finding.about_counts
    ):
        return
    decisive = f" ({finding.decisive})" if finding.decisive else ""
    finding.summary = f"{FEBRILE_NOW}{decisive}."
    if len(finding.summary) > MAX_SUMMARY:
        finding.summary = f"{FEBRILE_NOW}."
    if finding.indicator == "info":
        finding.indicator = "warning"
    finding.evidence.insert(0, f"Fever: {fever_text}")
    finding.recommendations = [f"{FEBRILE_NOW}.", *finding.recommendations][:5]
    finding.orders = [o for o in finding.orders if o.kind != "cbc"]
    finding.orders.insert(
        0, SuggestedOrder("cbc", "stat", "Order CBC with differential (stat)", recommended=True)
    )


def _most_important(findings: list[Finding]) -> list[Finding]:
    ranked = sorted(findings, key=lambda f: _PRIORITY[f.indicator])  # stable: catalogue order
    return ranked[:MAX_CARDS]


def _speaks(rule_id: str, record: PatientRecord, hook: str) -> bool:
    if rule_id in _ALWAYS and (record.unavailable or record.draft_notes):
        return True
    if hook in ORDER_HOOKS and rule_id in _ORDER_SCOPED:
        return record.in_scope_for_orders
    return record.in_scope


def evaluate_rules(
    record: PatientRecord, knowledge: Knowledge, hook: str, rule_ids: Iterable[str]
) -> list[Finding]:
    """Run the named rules in catalogue order. Out-of-scope patients get no cards (§2.2),
    except that missing or unreadable data is always said. Fever then leads every other
    cytopenia card, and at most MAX_CARDS findings are returned, most urgent first."""
    wanted = set(rule_ids)
    unknown = wanted - RULES.keys()
    if unknown:
        raise ValueError(f"unknown rule ids: {', '.join(sorted(unknown))}")
    context = RuleContext(record=record, knowledge=knowledge, hook=hook)
    for rule_id, rule in RULES.items():
        if rule_id not in wanted:
            continue
        if not _speaks(rule_id, record, hook):
            continue
        finding = rule(context)
        if finding is not None:
            context.fired.append(finding)
    found_fever = fever(record, knowledge)
    if found_fever is not None:
        for finding in context.fired:
            if finding.rule in _FEVER_LEADS:
                _febrile_now(finding, found_fever.description)
    return _most_important(context.fired)
