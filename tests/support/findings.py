"""Every catalogue rule's findings for resources given as one patient's record (builders.py),
evaluated as patient-view at builders.NOW, by rule id."""

from __future__ import annotations

from typing import Any

from cds_service.knowledge import Knowledge
from cds_service.record import build_record
from cds_service.rules import RULES, evaluate_rules
from cds_service.rules.base import Finding
from tests.support.builders import NOW, PATIENT


def findings(resources: list[dict[str, Any]], knowledge: Knowledge) -> dict[str, Finding]:
    record = build_record(resources, PATIENT, NOW, knowledge)
    return {f.rule: f for f in evaluate_rules(record, knowledge, "patient-view", RULES)}
