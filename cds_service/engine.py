"""One CDS call, end to end and free of HTTP: gather the data, build the PatientRecord, run
the service's rules, render the cards. The Flask layer and the CLI both call `evaluate`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from typing import Any

from cds_service.cards import render_card
from cds_service.config import Settings
from cds_service.deadline import Deadline
from cds_service.fhir.client import FetchObserver, unobserved
from cds_service.fhir.gather import gather
from cds_service.knowledge import Knowledge
from cds_service.protocol.hooks import ORDER_HOOKS
from cds_service.protocol.request import HookRequest
from cds_service.record import PatientRecord, build_record, names_other_patient
from cds_service.record.missing import read_since_kinds, unreadable_kinds
from cds_service.record.reading_plan import ReadingHorizon
from cds_service.rules.answer import Answer, Snoozed, make_answer
from cds_service.rules.reading import READING_NEEDS
from cds_service.services import ServiceDefinition


@dataclass
class Evaluation:
    record: PatientRecord
    answer: Answer  # the findings shown, snoozed and silent (rules/answer.py)
    cards: list[dict[str, Any]]  # the shown findings rendered
    # Per prefetch key: (what the prefetch held, the result), for the metrics.
    sources: dict[str, tuple[str, str]] = dataclass_field(default_factory=dict)
    hook: str = ""

    @property
    def in_scope(self) -> bool:
        """The patient is in the population the rules speak for (§2.2; on order hooks a tier
        A/B draft also brings them in): the denominator of "cards per 100 in-scope calls"."""
        return self.record.in_scope_for_orders if self.hook in ORDER_HOOKS else self.record.in_scope


def evaluate(
    service: ServiceDefinition,
    request: HookRequest,
    knowledge: Knowledge,
    config: Settings,
    now: datetime,
    snoozed: Snoozed | None = None,
    deadline: Deadline | None = None,
    observe_fetch: FetchObserver = unobserved,
) -> Evaluation:
    """`snoozed` (the view passes the governance store's look-up) tells which rules are
    snoozed for this patient; without it nothing is. With a `deadline` (the HTTP layer's), the
    fetch ends at its `fetch_by` and DeadlinePassed is raised when the evaluation runs past its
    `answer_by`. Each FHIR call is reported to `observe_fetch` (the app's metrics)."""
    drafts = request.drafts  # read once with the request; None on patient-view
    data = gather(
        service.prefetch,
        request.context,
        request.prefetch,
        request.fhir_server,
        request.access_token,
        config,
        context_resources=drafts.resources if drafts else (),
        horizon=ReadingHorizon(READING_NEEDS, knowledge, now),
        fetch_by=deadline.fetch_by if deadline else None,
        observe_fetch=observe_fetch,
    )
    resources = data.all_resources()
    mine = [r for r in resources if not names_other_patient(r, request.patient_id)]
    unavailable = _missing_data_reasons(data.unavailable, data.incomplete, config)
    if len(mine) != len(resources):
        # Another patient's data must never inform this patient's cards.
        unavailable["other-patient"] = (
            f"{len(resources) - len(mine)} resources for a different patient were ignored"
        )
    record = build_record(
        mine,
        request.patient_id,
        now,
        knowledge,
        unavailable,
        drafts=drafts,
        only_what_rules_read=READING_NEEDS,
        unreadable=unreadable_kinds(data.unavailable, data.incomplete, data.read_back_to),
        read_since=read_since_kinds(data.read_since),
        deadline=deadline,
    )
    if deadline:
        deadline.check("rules")
    answer = make_answer(
        record, knowledge, service.hook, service.rules, service.rule_modes, snoozed
    )
    cards = [render_card(f, request.patient_id, knowledge) for f in answer.cards]
    return Evaluation(record, answer, cards, data.sources, service.hook)


def _missing_data_reasons(
    unavailable: Mapping[str, str], incomplete: Mapping[str, str], config: Settings
) -> dict[str, str]:
    """What the DATA_QUALITY card says about each key the EHR could not provide. Outside
    development it says only that the data could not be retrieved: the precise reason ("HTTP
    401", "could not be reached") would tell a caller what answers at a fhirServer of its
    choosing, a port-scan oracle. The reasons are in the service's log (fhir.gather)."""
    if config.development:
        reasons = dict(unavailable)
        reasons.update({key: f"may be incomplete: {why}" for key, why in incomplete.items()})
        return reasons
    reasons = {key: "could not be retrieved" for key in unavailable}
    reasons.update({key: "may be incomplete" for key in incomplete})
    return reasons
