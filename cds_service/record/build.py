"""Building the PatientRecord of one call from the raw FHIR JSON the EHR sent (prefetch or
fetched): one `RecordBuilder` reads every resource with the reader of its kind, then the
counts are picked per draw and the drug exposures summarised."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from cds_service.deadline import Deadline
from cds_service.knowledge import Knowledge
from cds_service.protocol.draft_orders import DraftOrders
from cds_service.record.chart import Chart, ChartObservation
from cds_service.record.conditions import ConditionReader
from cds_service.record.drafts import DraftReader
from cds_service.record.model import PatientRecord, Raw
from cds_service.record.observations import ObservationReader
from cds_service.record.reading_plan import ReadingNeeds, plan_reading


class RecordBuilder(ObservationReader, ConditionReader, DraftReader):
    """Reads one chart; `build` once, then `draft_orders` on the order hooks."""

    def __init__(self, chart: Chart, now: datetime, patient_id: str) -> None:
        super().__init__(chart.knowledge, now, patient_id, chart.by_reference)
        self.chart = chart

    def build(self, skipped: frozenset[ChartObservation] = frozenset()) -> PatientRecord:
        """The record from every resource but the `skipped` Observations (only their Duffy
        phenotype, classified with their code, still counts)."""
        conditions = []
        for resource, observation in zip(self.chart.resources, self.chart.classified, strict=True):
            self.check_deadline()
            kind = resource.get("resourceType")
            if observation is not None and observation in skipped:
                self.record.duffy_null = self.record.duffy_null or observation.duffy_null
            elif observation is not None:
                self.observation(observation)
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
    drafts: DraftOrders | None = None,
    only_what_rules_read: ReadingNeeds | None = None,
    unreadable: Mapping[str, datetime | None] | None = None,
    read_since: Mapping[str, datetime] | None = None,
    deadline: Deadline | None = None,
) -> PatientRecord:
    """The PatientRecord of `resources`.

    `drafts` are the order hooks' draft orders as the request was read (their Medication
    entries join the chart, to resolve the drafts' references). With `only_what_rules_read`
    (the rules' `READING_NEEDS`), old Observations that no rule can reach are not parsed (see
    `reading_plan`); the rules then decide exactly as on the full record, but `counts` and
    `unusable` hold only the recent part of the history. Either way each Observation is
    classified and read once (`chart`). `unreadable` and `read_since` (record/missing.py) say
    which kinds of data could not be read, so that no rule reads them as absent. With a
    `deadline`, DeadlinePassed is raised between resources once it is past its `answer_by`."""
    chart = Chart([*resources, *drafts.medications] if drafts else resources, knowledge)
    builder, record = None, None
    if only_what_rules_read is not None:
        plan = plan_reading(chart, now, only_what_rules_read)
        if plan.skipped:
            lean_builder = RecordBuilder(chart, now, patient_id)
            lean_builder.deadline = deadline
            lean = lean_builder.build(plan.skipped)
            if plan.holds_for(lean):
                builder, record = lean_builder, lean
    if builder is None or record is None:
        builder = RecordBuilder(chart, now, patient_id)
        builder.deadline = deadline
        record = builder.build()
    if drafts is not None:
        builder.draft_orders(drafts)
    record.unavailable = dict(unavailable or {})
    record.unreadable = dict(unreadable or {})
    record.read_since = dict(read_since or {})
    return record
