"""The answer to one hook call, made in one place from the rules' findings (issue 25 item 1,
issue 26 rule modes). In order:

1. precedence and the fever lead (rules/__init__.py `evaluate_rules`), on the live rules only:
   a silent rule must never suppress or absorb a live card, or the patient would get nothing;
2. rules set `off` do not run; rules set `silent` run beside the live ones, with every rule
   live, so the history can say what the answer would have been (their findings are recorded,
   never returned);
3. snoozes: the non-critical findings' rules are asked of a `Snoozed` port the caller passes in
   (the engine imports nothing from governance); a critical card is never snoozed;
4. the 3-card cap (issue 11 "cards read in seconds") on what is left, so a snoozed card makes
   room for the next finding: the data-missing card first of all (§2.6 v4), then by indicator
   (critical, warning, info), within an indicator in order hooks the cards about an evaluated
   draft first (v4: they are about what the clinician is doing), then catalogue order;
5. one CBC order and one hematology referral per answer (rules/one_order.py, §3 precedence
   v4), on the cards actually shown: a snoozed or capped card never carries the only order.

Decision (the spec is silent): silent findings are the rules' findings before the cap, so a
silent rule's firing count is how often it would fire; whether it would also have fitted in
the 3 cards is in `all_live`. A silent rule that fails is logged and left out: a rule under
evaluation must never cost the clinician the live cards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from copy import deepcopy
from dataclasses import dataclass
from typing import Literal

from cds_service.knowledge import Knowledge
from cds_service.protocol.hooks import ORDER_HOOKS
from cds_service.record import PatientRecord
from cds_service.rules import evaluate_rules
from cds_service.rules.base import Finding
from cds_service.rules.catalogue import BY_ID
from cds_service.rules.one_order import one_order_each

log = logging.getLogger(__name__)

RuleMode = Literal["live", "silent", "off"]
MAX_CARDS = 3
_PRIORITY = {"critical": 0, "warning": 1, "info": 2}

# Given the ids of rules with a non-critical finding, the ones snoozed for this patient.
Snoozed = Callable[[frozenset[str]], Collection[str]]


@dataclass(frozen=True)
class Answer:
    cards: tuple[Finding, ...]  # what the clinician is shown, most urgent first
    snoozed: tuple[Finding, ...]  # live findings held back by a snooze
    silent: tuple[Finding, ...]  # silent rules' findings: recorded, never shown
    # Rule ids of the answer had every silent rule been live (snoozes and cap applied); None
    # when no rule is silent, as it is then `cards`.
    all_live: tuple[str, ...] | None = None


def most_important(
    findings: Iterable[Finding], hook: str = "", record: PatientRecord | None = None
) -> list[Finding]:
    """At most MAX_CARDS: the data-missing card first of all (§2.6 v4: the other cards were
    made without that data), then by indicator; within an indicator, in order hooks, the cards
    about an evaluated draft first (v4: the order being written comes first); then catalogue
    order."""

    def rank(finding: Finding) -> tuple[bool, int, bool]:
        data_missing = finding.rule == "DATA_QUALITY" and bool(record and record.unavailable)
        about_draft = hook in ORDER_HOOKS and BY_ID[finding.rule].scope == "order"
        return not data_missing, _PRIORITY[finding.indicator], not about_draft

    return sorted(findings, key=rank)[:MAX_CARDS]  # sorted is stable: catalogue order


def shown(findings: Iterable[Finding], hook: str, record: PatientRecord) -> list[Finding]:
    """The cards shown of the findings left after snoozes: the cap, then one CBC order and one
    referral among them (on copies: a finding may also be recorded as it was made)."""
    return one_order_each([deepcopy(f) for f in most_important(findings, hook, record)])


def make_answer(
    record: PatientRecord,
    knowledge: Knowledge,
    hook: str,
    rule_ids: Iterable[str],
    modes: Mapping[str, RuleMode] | None = None,
    snoozed: Snoozed | None = None,
) -> Answer:
    """The answer from the service's rules; `modes` gives the rules not `live`."""
    modes = modes or {}
    running = [rule for rule in rule_ids if modes.get(rule, "live") != "off"]
    live_ids = [rule for rule in running if modes.get(rule, "live") == "live"]
    live = evaluate_rules(record, knowledge, hook, live_ids)
    everything = _with_silent_rules(record, knowledge, hook, running, live_ids)
    held = _snoozed_rules(snoozed, [*live, *(everything or ())])
    cards, snoozed_findings = _unsnoozed(live, held)
    if everything is None:
        return Answer(tuple(shown(cards, hook, record)), tuple(snoozed_findings), ())
    silent_ids = set(running) - set(live_ids)
    would_be = shown(_unsnoozed(everything, held)[0], hook, record)
    return Answer(
        cards=tuple(shown(cards, hook, record)),
        snoozed=tuple(snoozed_findings),
        silent=tuple(f for f in everything if f.rule in silent_ids),
        all_live=tuple(f.rule for f in would_be),
    )


def _with_silent_rules(
    record: PatientRecord, knowledge: Knowledge, hook: str, running: list[str], live: list[str]
) -> list[Finding] | None:
    """Every running rule's findings as if all were live; None when no rule is silent."""
    if len(running) == len(live):
        return None
    try:
        return evaluate_rules(record, knowledge, hook, running)
    except Exception as error:  # a silent rule's fault must not fail the live answer
        silent = sorted(set(running) - set(live))
        log.error(
            "silent rules failed (%s); answered with the live rules only: %s",
            type(error).__name__,
            ", ".join(silent),
        )
        return None


def _snoozed_rules(snoozed: Snoozed | None, findings: Iterable[Finding]) -> Collection[str]:
    candidates = frozenset(f.rule for f in findings if f.indicator != "critical")
    if snoozed is None or not candidates:
        return frozenset()
    return snoozed(candidates)


def _unsnoozed(
    findings: Iterable[Finding], held: Collection[str]
) -> tuple[list[Finding], list[Finding]]:
    shown: list[Finding] = []
    snoozed: list[Finding] = []
    for finding in findings:
        if finding.indicator != "critical" and finding.rule in held:
            snoozed.append(finding)
        else:
            shown.append(finding)
    return shown, snoozed
