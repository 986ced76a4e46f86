"""One CBC order and one hematology referral per answer (clinical rules §3 precedence v4).

Two cards each offering "Order CBC" make two orders when a clinician accepts both: the card
highest in the answer that offers one carries it, with the most urgent priority and the fullest
content any card asked for (stat, with a smear); every other card says the order is offered on
the card above instead of showing a second button. Runs on the cards of the answer, after the
3-card cap, so the carrier is a card the clinician sees.

Choice where the spec is silent: the carrier is the highest card that offers the order (a card
that offered none does not gain one). Alternatives on one card (cancel + CBC, defer + CBC, keep
+ CBC: `at-most-one`) are one action, since only one of them can be taken.
"""

from __future__ import annotations

from dataclasses import replace

from cds_service.rules.base import Finding, Priority, SuggestedOrder

_URGENCY: dict[Priority, int] = {"routine": 0, "urgent": 1, "stat": 2}
_OFFERED_ABOVE = {
    "cbc": "CBC order offered on the card above.",
    "hematology_referral": "Hematology referral offered on the card above.",
}
MAX_RECOMMENDATIONS = 5


def _orders(finding: Finding) -> list[SuggestedOrder]:
    return finding.orders + [o for c in finding.draft_changes for o in c.with_orders]


def _fullest(order: SuggestedOrder, priority: Priority, smear: bool) -> SuggestedOrder:
    """The order at `priority` (with a smear for a CBC), its label saying so."""
    has_smear = "smear" in order.label
    if order.priority == priority and (has_smear or not smear or order.kind != "cbc"):
        return order
    if order.kind == "cbc":
        lead = "Keep the order and order" if order.label.startswith("Keep the order") else "Order"
        label = f"{lead} CBC with differential{' and smear' if smear else ''} ({priority})"
    else:
        label = f"Refer to hematology ({priority})"
    return replace(order, priority=priority, label=label)


def _carry(finding: Finding, kind: str, priority: Priority, smear: bool) -> None:
    def fullest(o: SuggestedOrder) -> SuggestedOrder:
        return _fullest(o, priority, smear) if o.kind == kind else o

    finding.orders = [fullest(o) for o in finding.orders]
    finding.draft_changes = [
        replace(c, with_orders=tuple(fullest(o) for o in c.with_orders))
        for c in finding.draft_changes
    ]


def _drop(finding: Finding, kind: str) -> None:
    finding.orders = [o for o in finding.orders if o.kind != kind]
    finding.draft_changes = [
        replace(c, with_orders=tuple(o for o in c.with_orders if o.kind != kind))
        for c in finding.draft_changes
    ]
    note = _OFFERED_ABOVE[kind]
    if len(finding.recommendations) < MAX_RECOMMENDATIONS:
        finding.recommendations.append(note)
    else:
        finding.evidence.append(note)


def one_order_each(findings: list[Finding]) -> list[Finding]:
    """At most one CBC order and one hematology referral in the answer (`findings` in answer
    order): the highest card offering each carries it, at the most urgent priority asked."""
    for kind in ("cbc", "hematology_referral"):
        carriers = [f for f in findings if any(o.kind == kind for o in _orders(f))]
        if len(carriers) < 2:
            continue
        asked = [o for f in carriers for o in _orders(f) if o.kind == kind]
        priority = max((o.priority for o in asked), key=lambda p: _URGENCY[p])
        smear = any("smear" in o.label for o in asked)
        _carry(carriers[0], kind, priority, smear)
        for finding in carriers[1:]:
            _drop(finding, kind)
    return findings
