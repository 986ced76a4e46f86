"""Building the PatientRecord of one call from the raw FHIR JSON the EHR sent (prefetch or
fetched): one `RecordBuilder` reads every resource with the reader of its kind, then the
counts are picked per draw and the drug exposures summarised."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cds_service.deadline import Deadline
from cds_service.knowledge import Knowledge
from cds_service.record.conditions import ConditionReader, is_duffy_null
from cds_service.record.drafts import DraftReader
from cds_service.record.model import PatientRecord, Raw
from cds_service.record.observations import ObservationReader
from cds_service.record.reading_plan import ReadingNeeds, plan_reading


class RecordBuilder(ObservationReader, ConditionReader, DraftReader):
    """Reads one chart; `build` once, then `draft_orders` on the order hooks."""

    def build(self, skipped: frozenset[int] = frozenset()) -> PatientRecord:
        """The record from every resource but the Observations whose id() is in `skipped`
        (only their Duffy phenotype, a cheap look at the code, is still read)."""
        conditions = []
        for resource in self.resources:
            self.check_deadline()
            kind = resource.get("resourceType")
            if kind == "Observation" and id(resource) in skipped:
                self.record.duffy_null = self.record.duffy_null or is_duffy_null(resource, self.k)
            elif kind == "Observation":
                self.observation(resource)
            elif kind == "Condition":
                conditions.append(resource)
            elif kind in ("MedicationStatement", "MedicationRequest", "MedicationAdministration"):
                self.medication_resource(resource)
        self.conditions(conditions)
        self.finish_counts()
        self.record.temperatures.sort(key=lambda t: t.time, reverse=True)
        self.summarise_exposures()
        return self.record


def build_record(
    resources: Sequence[Raw],
    patient_id: str,
    now: datetime,
    knowledge: Knowledge,
    unavailable: Mapping[str, str] | None = None,
    draft_orders: Any = None,
    selections: list[str] | None = None,
    only_what_rules_read: ReadingNeeds | None = None,
    unreadable: Mapping[str, datetime | None] | None = None,
    read_since: Mapping[str, datetime] | None = None,
    deadline: Deadline | None = None,
) -> PatientRecord:
    """The PatientRecord of `resources`.

    `draft_orders` is the order hooks' `context.draftOrders` Bundle (its Medication entries
    must be among `resources` to resolve references); `selections` None = all evaluated.
    With `only_what_rules_read` (the rules' `READING_NEEDS`), old Observations that no rule
    can reach are not parsed (see `reading_plan`); the rules then decide exactly as on the full
    record, but `counts` and `unusable` hold only the recent part of the history.
    `unreadable` and `read_since` (record/missing.py) say which kinds of data could not be
    read, so that no rule reads them as absent. With a `deadline`, DeadlinePassed is raised
    between resources once it is past its `answer_by`."""
    builder, record = None, None
    if only_what_rules_read is not None:
        plan = plan_reading(resources, knowledge, now, only_what_rules_read)
        if plan.skipped:
            lean_builder = RecordBuilder(knowledge, now, patient_id, resources)
            lean_builder.deadline = deadline
            lean = lean_builder.build(plan.skipped)
            if plan.holds_for(lean):
                builder, record = lean_builder, lean
    if builder is None or record is None:
        builder = RecordBuilder(knowledge, now, patient_id, resources)
        builder.deadline = deadline
        record = builder.build()
    if draft_orders is not None:
        builder.draft_orders(draft_orders, selections)
    record.unavailable = dict(unavailable or {})
    record.unreadable = dict(unreadable or {})
    record.read_since = dict(read_since or {})
    return record
