"""The rule catalogue (clinical rules §3): one pure function per rule id, run in order, with
precedence applied as each rule can see the findings of the rules before it.

"Clinical rules §N" in this package refers to docs/clinical-rules.md, the clinical contract as
this service implements it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cds_service.knowledge import Knowledge
from cds_service.record import PatientRecord
from cds_service.rules.base import Finding, RuleContext
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
    ORDER_HOOKS,
    gcsf_caution,
    order_myelotoxic_low_counts,
    order_no_recent_cbc,
    thiopurine_pgx_any_hook,
)

Rule = Callable[[RuleContext], Finding | None]

# Order matters: a rule may read the findings of the rules above it (precedence, §3).
RULES: dict[str, Rule] = {
    "FEBRILE_NEUTROPENIA": febrile_neutropenia,
    "NEUTROPENIA_SEVERE": neutropenia_severe,
    "NEUTROPENIA_MODERATE": neutropenia_moderate,
    "DRUG_CYTOPENIA_DOSE_REVIEW": drug_cytopenia_dose_review,
    "ORDER_MYELOTOXIC_LOW_COUNTS": order_myelotoxic_low_counts,
    "ORDER_NO_RECENT_CBC": order_no_recent_cbc,
    "GCSF_CAUTION": gcsf_caution,
    "LYMPHOPENIA_PROFOUND": lymphopenia_profound,
    "LYMPHOPENIA_INFO": lymphopenia_info,
    "REFRACTORY_LEUKOPENIA_REFERRAL": refractory_leukopenia_referral,
    "LEUKOPENIA_MONITOR": leukopenia_monitor,
    "THIOPURINE_PGX": thiopurine_pgx_any_hook,
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
    except that missing or unreadable data is always said."""
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
    return context.fired
