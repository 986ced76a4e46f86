"""Findings -> CDS Hooks 2.0 cards.

One card builder: a uuid, a summary under 140 characters, markdown detail with the evidence
and the recommendation, the indicator, a source citing the primary reference with the rule id
as `topic`, suggestions as real FHIR actions, override reasons and links to the other sources.
Nothing here emits null or empty values (CDS Hooks §use-of-json).

Cards are read in seconds (issue 11): each reference is shown once (the primary in `source`,
the others as `links`, never again in the text), and the rule id and knowledge version stay
machine-readable (`source.topic`, the card `extension`) instead of being printed in the detail.
"""

from __future__ import annotations

import uuid
from typing import Any

from cds_service.knowledge import LOINC, SNOMED, Knowledge
from cds_service.rules.base import MAX_SUMMARY, DraftOrderChange, Finding, SuggestedOrder
from cds_service.rules.catalogue import rule_title

RULE_SYSTEM = "https://leukopenia-cds.example.org/CodeSystem/rule"
OVERRIDE_SYSTEM = "https://leukopenia-cds.example.org/CodeSystem/override-reason"
# Card extension key carrying the knowledge version (machine-readable, not shown to clinicians).
KNOWLEDGE_VERSION_EXTENSION = "leukopenia-cds-knowledge-version"

OVERRIDE_REASONS = {
    "already-addressed": "Already addressed",
    "counts-reviewed": "Counts already reviewed",
    "benefit-outweighs-risk": "Benefit outweighs risk",
    "duffy-null": "Patient is Duffy-null (known low neutrophil count)",
    "data-incorrect": "The data shown are incorrect",
    "hematology-advised": "Advised by hematology",
    # METHOTREXATE_DAILY_DOSING (clinical rules §3 v4): the protocols that dose more often.
    "oncology-protocol": "Oncology protocol",
    "obstetric-protocol": "Obstetric protocol (e.g. ectopic pregnancy)",
    "specialist-protocol": "Other specialist protocol",
    "weekly-dose-split": "A weekly dose split over one day",
}

_ORDERABLES = {
    "cbc": ("cbc_with_differential", LOINC),
    "tpmt_nudt15": ("tpmt_nudt15_genotype", LOINC),
}
# SNOMED CT 3457005 "Patient referral"; the specialty travels in the text.
_REFERRAL = {"system": SNOMED, "code": "3457005", "display": "Patient referral"}


def _service_request(
    order: SuggestedOrder, patient_id: str, knowledge: Knowledge, reason: str
) -> dict[str, Any]:
    if order.kind == "hematology_referral":
        code = {"coding": [_REFERRAL], "text": "Referral to hematology"}
    else:
        key, system = _ORDERABLES[order.kind]
        orderable = knowledge.orderables[key]
        code = {
            "coding": [
                {"system": system, "code": orderable["code"], "display": orderable["display"]}
            ]
        }
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal" if order.kind == "hematology_referral" else "order",
        "priority": order.priority,
        "code": code,
        "subject": {"reference": f"Patient/{patient_id}"},
        "reasonCode": [{"text": reason}],
    }


def _suggestion(label: str, actions: list[dict[str, Any]], recommended: bool) -> dict[str, Any]:
    suggestion: dict[str, Any] = {"label": label, "uuid": str(uuid.uuid4()), "actions": actions}
    if recommended:
        suggestion["isRecommended"] = True
    return suggestion


def _order_suggestion(
    order: SuggestedOrder, finding: Finding, patient_id: str, knowledge: Knowledge
) -> dict[str, Any]:
    resource = _service_request(order, patient_id, knowledge, rule_title(finding.rule))
    return _suggestion(
        order.label,
        [{"type": "create", "description": order.label, "resource": resource}],
        order.recommended,
    )


def _draft_suggestion(
    change: DraftOrderChange, finding: Finding, patient_id: str, knowledge: Knowledge
) -> dict[str, Any]:
    action: dict[str, Any] = {"type": change.kind, "description": change.label}
    if change.kind == "delete":
        action["resourceId"] = change.resource_id
    else:
        action["resource"] = change.resource
    creates = [
        {
            "type": "create",
            "description": order.label,
            "resource": _service_request(order, patient_id, knowledge, rule_title(finding.rule)),
        }
        for order in change.with_orders
    ]
    return _suggestion(draft_change_label(change), [action, *creates], change.recommended)


def draft_change_label(change: DraftOrderChange) -> str:
    """A suggestion's label names every action it takes (clinical rules §3 suggestions v4):
    "Cancel the azathioprine order and order CBC with differential (stat)"."""
    orders = "".join(f" and {o.label[:1].lower()}{o.label[1:]}" for o in change.with_orders)
    return change.label + orders


def _detail(finding: Finding) -> str:
    lines = ["**Evidence**", ""]
    lines += [f"- {line}" for line in finding.evidence]
    lines += ["", "**Recommendation**", ""]
    lines += [f"- {line}" for line in finding.recommendations]
    if finding.evidence_level:
        lines += ["", f"_{finding.evidence_level}_"]
    return "\n".join(lines)


def _summary(text: str) -> str:
    """Rules word their summaries to fit; this is only a safety net, and it never cuts a word."""
    if len(text) <= MAX_SUMMARY:
        return text
    cut = text[: MAX_SUMMARY - 3].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "..."


def render_card(finding: Finding, patient_id: str, knowledge: Knowledge) -> dict[str, Any]:
    primary = knowledge.source(finding.sources[0])
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": _summary(finding.summary),
        "detail": _detail(finding),
        "indicator": finding.indicator,
        "source": {
            "label": primary.label,
            "url": primary.url,
            "topic": {
                "system": RULE_SYSTEM,
                "code": finding.rule,
                "display": rule_title(finding.rule),
            },
        },
    }
    suggestions = [
        _draft_suggestion(c, finding, patient_id, knowledge) for c in finding.draft_changes
    ]
    suggestions += [_order_suggestion(o, finding, patient_id, knowledge) for o in finding.orders]
    if suggestions:
        card["suggestions"] = suggestions
        # Several actions may make sense together (e.g. a CBC and a referral), except when a
        # card offers alternative changes to the same draft order.
        card["selectionBehavior"] = "at-most-one" if finding.draft_changes else "any"
    if finding.override_reasons:
        card["overrideReasons"] = [
            {"system": OVERRIDE_SYSTEM, "code": code, "display": OVERRIDE_REASONS[code]}
            for code in finding.override_reasons
        ]
    others = list(dict.fromkeys(key for key in finding.sources[1:] if key != finding.sources[0]))
    if others:
        card["links"] = [
            {
                "label": knowledge.source(key).label,
                "url": knowledge.source(key).url,
                "type": "absolute",
            }
            for key in others
        ]
    card["extension"] = {KNOWLEDGE_VERSION_EXTENSION: knowledge.version}
    return card
