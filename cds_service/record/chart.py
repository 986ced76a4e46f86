"""One chart: the resources of one call, with each Observation classified once.

Classifying an Observation (which result its code names, whether it carries a Duffy phenotype
code, when it was taken) is cheap and is done for all of them, once; the reading plan sorts
them by it and the readers read it. What the result says (valid or why not, status, value and
unit, the lab's critical-low flag) costs a FHIR validation, so it is read only for the
Observations the plan keeps, and at most once even when the record is built twice (the lean
record falls short, `build.build_record`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from cds_service.fhir.validation import invalid_reason
from cds_service.knowledge import Knowledge
from cds_service.record import terminology
from cds_service.record.conditions import duffy_null_by, site_duffy_entry
from cds_service.record.model import Raw
from cds_service.record.reader import as_list, observation_time, received_text, reference_of

# Counts whose critical-low flag the rules read, by the analyte they describe.
FLAG_GROUPS = {"wbc": "wbc", "anc": "anc", "neutrophils_segmented": "anc", "alc": "alc"}
_TEXT_VALUE = re.compile(r"^\s*(<=|<|\u2264|>=|>|\u2265)?\s*(\d+(?:\.\d+)?|\.\d+)\s*(.*?)\s*$")
_COMPARATORS = {"\u2264": "<=", "\u2265": ">="}


class ObservationValue(NamedTuple):
    """What one Observation says, read once (a tuple: one per result read)."""

    problem: str | None  # why it is not valid FHIR R4B; None when valid
    status: str
    received: str  # the value as the lab sent it ("<0.1 K/uL")
    # valueQuantity, or the quantity read from valueString; None when there is none.
    quantity: Raw | None
    numeric: bool  # the quantity's value is a number
    critical_low: bool  # the lab flags it critically low (read only for the counts)


class ChartObservation:
    """One Observation, classified once; its `value` is read on first use (slots: a long
    history holds thousands)."""

    __slots__ = ("resource", "k", "analyte", "code", "duffy_null", "used", "time", "_value")

    def __init__(self, resource: Raw, knowledge: Knowledge) -> None:
        self.resource = resource
        self.k = knowledge
        matched = terminology.analyte_of(resource.get("code"), knowledge)
        # The rules' analyte its code names and that (system, code); None: no result the rules use.
        self.analyte: str | None = matched[0] if matched else None
        self.code: tuple[str, str] | None = matched[1] if matched else None
        # A Duffy phenotype code of the site (the value duffy-null or not) is read too.
        duffy = site_duffy_entry(resource, knowledge)
        self.duffy_null = duffy is not None and duffy_null_by(resource, duffy)
        # Whether any rule reads it; the others are never validated nor read.
        self.used = matched is not None or duffy is not None
        self.time: datetime | None = observation_time(resource) if matched else None
        self._value: ObservationValue | None = None

    @property
    def reference(self) -> str:
        return reference_of(self.resource)

    @property
    def value(self) -> ObservationValue:
        if self._value is None:
            self._value = self._read_value()
        return self._value

    def _read_value(self) -> ObservationValue:
        obs = self.resource
        status = str(obs.get("status"))
        if problem := invalid_reason(obs):
            return ObservationValue(problem, status, "", None, False, False)  # nothing else read
        quantity = obs.get("valueQuantity") if isinstance(obs.get("valueQuantity"), dict) else None
        received = received_text(quantity) if quantity else str(obs.get("valueString") or "")
        if quantity is None and isinstance(obs.get("valueString"), str):
            quantity = _quantity_of_text(obs["valueString"])
        number = quantity.get("value") if quantity else None
        numeric = not isinstance(number, bool) and isinstance(number, int | float)
        flagged = self.analyte in FLAG_GROUPS and self._flagged_critical_low()
        return ObservationValue(None, status, received, quantity, numeric, flagged)

    def _flagged_critical_low(self) -> bool:
        """The lab's own critical-low flag: `interpretation` LL or `<` (v3-ObservationInterpretation
        or HL7 v2 table 0078, same codes), or an interpretation text such as "critically low".
        AA ("critical abnormal") is not read as low: it does not say which way."""
        flags = self.k.units["critical_low_interpretation"]
        for concept in as_list(self.resource.get("interpretation")):
            if any(str(c.get("code")) in flags["codes"] for c in terminology.codings(concept)):
                return True
            text = terminology.concept_text(concept).lower()
            if any(phrase in text for phrase in flags["texts"]):
                return True
        return False


def _quantity_of_text(text: str) -> Raw | None:
    """A result sent as text, such as "<0.1 x10^9/L" or "1.8": its comparator, number and
    unit text (read by name like any unit; none when absent). Decimal commas are not read
    ("1,800" could be a thousands separator), nor text around the number."""
    match = _TEXT_VALUE.match(text)
    if match is None:
        return None
    comparator, number, unit = match.groups()
    quantity: dict[str, Any] = {"value": float(number)}
    if comparator:
        quantity["comparator"] = _COMPARATORS.get(comparator, comparator)
    if unit:
        quantity["unit"] = unit
    return quantity


class Chart:
    """The resources of one call in the order received, each Observation with its
    classification (`classified`, in step with `resources`), and the resources by reference
    (to resolve `medicationReference`)."""

    def __init__(self, resources: Sequence[Raw], knowledge: Knowledge) -> None:
        self.knowledge = knowledge
        self.resources = resources
        # None for the resources that are not Observations (no tuple per resource: a long
        # history holds thousands, and every object allocated brings the next GC sooner).
        self.classified: list[ChartObservation | None] = [
            ChartObservation(r, knowledge) if r.get("resourceType") == "Observation" else None
            for r in resources
        ]
        self.observations = [entry for entry in self.classified if entry is not None]
        self.by_reference = {
            reference_of(r): r for r in resources if r.get("resourceType") and r.get("id")
        }
