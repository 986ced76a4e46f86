"""Running the rule catalogue (clinical rules §3; the rules, their order, scope, family and
precedence are rows of rules/catalogue.py): one pure function per rule id, run in catalogue
order, each seeing the findings of the rules before it.

One step follows the rules (v3): fever changes every other cytopenia card (§2.4 "fever with
other cytopenia"): it leads with "Febrile now: same-day assessment and CBC with differential
stat" and is at least a warning. The rest of the answer (rule modes, snoozes, the 3-card cap
with the data-missing card first and, in order hooks, the cards about a draft first within
their indicator, then one CBC order and one referral per answer) is rules/answer.py.

A rule that would read as absent data which could not be read stays silent
(rules/unreadable.py, §1.2 v4).

"Clinical rules §N" in this package refers to docs/clinical-rules.md, the clinical contract as
this service implements it.
"""

from __future__ import annotations

from collections.abc import Iterable

from cds_service.knowledge import Knowledge
from cds_service.protocol.hooks import ORDER_HOOKS
from cds_service.record import PatientRecord
from cds_service.rules.assessments import critical_state, fever, neutrophil_state
from cds_service.rules.base import (
    FEBRILE_NOW,
    MAX_SUMMARY,
    Finding,
    Rule,
    RuleContext,
    SuggestedOrder,
)
from cds_service.rules.catalogue import BY_ID, CATALOGUE, FAMILIES, CatalogueRow
from cds_service.rules.unreadable import silenced

# Every rule by id, in run order.
RULES: dict[str, Rule] = {row.id: row.function for row in CATALOGUE}


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


def _speaks(row: CatalogueRow, record: PatientRecord, hook: str) -> bool:
    """The row's scope (rules/catalogue.py Scope)."""
    if row.scope == "always" and (record.unavailable or record.draft_notes):
        return True
    if hook in ORDER_HOOKS and row.scope != "patient":
        return record.in_scope_for_orders
    return record.in_scope


def rule_context(record: PatientRecord, knowledge: Knowledge, hook: str) -> RuleContext:
    """One call's context: the record, and the judgements many rules share (fever, the
    current counts), made once here rather than by each rule."""
    return RuleContext(
        record=record,
        knowledge=knowledge,
        hook=hook,
        families=FAMILIES,
        fever=fever(record, knowledge),
        neutrophils=neutrophil_state(record, knowledge, include_preliminary=False),
        critical_neutrophils=critical_state(record, knowledge),
    )


def evaluate_rules(
    record: PatientRecord, knowledge: Knowledge, hook: str, rule_ids: Iterable[str]
) -> list[Finding]:
    """Run the named rules in catalogue order. Out-of-scope patients get no cards (§2.2),
    except that missing or unreadable data is always said. Fever then leads every other
    cytopenia card. Every finding is returned, in catalogue order: rules/answer.py makes the
    answer of them."""
    wanted = set(rule_ids)
    unknown = wanted - BY_ID.keys()
    if unknown:
        raise ValueError(f"unknown rule ids: {', '.join(sorted(unknown))}")
    context = rule_context(record, knowledge, hook)
    for row in CATALOGUE:
        if row.id not in wanted or not _speaks(row, record, hook):
            continue
        if context.has_fired(*row.suppressed_by) or context.carried(row.id):
            continue  # one card per problem (§3.2): the card before it said it
        if silenced(row.id, record):
            continue  # it would read data that could not be read as absent (§1.2 v4)
        finding = row.function(context)
        if finding is not None:
            finding.rule = row.id
            context.fired.append(finding)
    found_fever = context.fever
    if found_fever is not None:
        for finding in context.fired:
            if BY_ID[finding.rule].fever_leads:
                _febrile_now(finding, found_fever.description)
    return context.fired
