"""What every part of reading a chart shares: the state of one build and the FHIR fields read
from more than one kind of resource.

The record is built by one `build.RecordBuilder` from one `chart.Chart`, composed of one reader
per kind of resource (counts, observations, conditions, medications, draft orders); each is a
subclass of `ChartReader`, which declares the state they share."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cds_service.deadline import Deadline
from cds_service.fhir.dates import as_datetime
from cds_service.knowledge import Knowledge
from cds_service.record import units
from cds_service.record.model import PatientRecord, Raw, UnusableResult, shown_comparator


class ChartReader:
    """The state of one build: the knowledge, the record being filled and the chart's
    resources by reference (to resolve `medicationReference`)."""

    # Set by build_record for a call with a deadline.
    deadline: Deadline | None = None

    def __init__(
        self, knowledge: Knowledge, now: datetime, patient_id: str, by_reference: Mapping[str, Raw]
    ) -> None:
        self.k = knowledge
        self.record = PatientRecord(now=now, patient_id=patient_id)
        self.by_reference = by_reference

    def check_deadline(self) -> None:
        """Between resources: DeadlinePassed once the call is past its deadline (one resource
        costs at most ~0.2 s, fhir.validation.MAX_RESOURCE_VALUES)."""
        if self.deadline is not None:
            self.deadline.check("reading the patient's data")

    def unusable(
        self,
        what: str,
        received: str,
        time: datetime | None,
        reason: str,
        ref: str,
        analyte: str = "",
        value: float | None = None,
        comparator: str = "",
        critical_low: bool = False,
    ) -> None:
        self.record.unusable.append(
            UnusableResult(
                what, received, time, reason, ref, analyte, value, comparator, critical_low
            )
        )


def names_other_patient(resource: Raw, patient_id: str) -> bool:
    """True when a resource names a different patient than the one in context."""
    if resource.get("resourceType") == "Patient":
        return bool(resource.get("id")) and resource.get("id") != patient_id
    for key in ("subject", "patient"):
        reference = resource.get(key)
        if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
            parts = reference["reference"].rstrip("/").split("/")
            if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1] != patient_id:
                return True
    return False


def reference_of(resource: Raw) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"


def observation_time(obs: Raw) -> datetime | None:
    period = obs.get("effectivePeriod")
    return (
        as_datetime(obs.get("effectiveDateTime"))
        or (as_datetime(period.get("start")) if isinstance(period, dict) else None)
        or as_datetime(obs.get("effectiveInstant"))
        or as_datetime(obs.get("issued"))
    )


def specimen_of(obs: Raw) -> str | None:
    specimen = obs.get("specimen")
    if isinstance(specimen, dict) and specimen.get("reference"):
        return str(specimen["reference"])
    return None


def received_text(quantity: Raw) -> str:
    """A quantity as the lab sent it, e.g. "<0.1 K/uL"."""
    value = quantity.get("value")
    comparator = quantity.get("comparator") if isinstance(quantity.get("comparator"), str) else ""
    return (
        f"{shown_comparator(str(comparator or ''))}{value} {units.received_unit(quantity)}".strip()
    )


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
