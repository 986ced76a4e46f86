"""Diagnoses: lupus (SLE, drug-induced, unspecified), fever Conditions, and the Duffy-null
phenotype, which comes as a Condition or an Observation (clinical rules §2.1, §2.4). Only
counted Conditions are read: active, and confirmed or (marked so) suspected."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cds_service.fhir.dates import as_datetime
from cds_service.fhir.validation import invalid_reason
from cds_service.knowledge import Knowledge
from cds_service.record import terminology
from cds_service.record.model import COUNTED_OBSERVATION_STATUSES, LupusDiagnosis, Raw
from cds_service.record.reader import ChartReader


class ConditionReader(ChartReader):
    """Sets the lupus diagnosis, the fever Conditions, the Duffy-null phenotype and the
    indication of the immunosuppressants (transplant status, another rheumatic disease)."""

    def conditions(self, conditions: Iterable[Raw]) -> None:
        found: dict[str, list[tuple[bool, str]]] = {}
        for condition in conditions:
            self.check_deadline()
            group = terminology.condition_group(condition.get("code"), self.k)
            if group is None and not has_duffy_code(condition, self.k):
                continue
            if invalid_reason(condition):
                continue  # not valid FHIR: a diagnosis is never inferred from it
            if is_duffy_null(condition, self.k):
                self.record.duffy_null = True
            suspected = _condition_counts(condition)
            if group is None or suspected is None:
                continue
            display = terminology.concept_text(condition.get("code"))
            if group == "fever":
                onset = (
                    as_datetime(condition.get("onsetDateTime"))
                    or (
                        as_datetime((condition.get("onsetPeriod") or {}).get("start"))
                        if isinstance(condition.get("onsetPeriod"), dict)
                        else None
                    )
                    or as_datetime(condition.get("recordedDate"))
                )
                if onset is not None:
                    self.record.fever_conditions.append((display, onset))
                continue
            found.setdefault(group, []).append((suspected, display))
        self.record.lupus = self._lupus(found)
        # A suspected transplant status counts too: anti-rejection drugs are never to be
        # withheld on the card's own advice when it may be true.
        self.record.transplant = (
            sorted(found["transplant"])[0][1] if "transplant" in found else None
        )
        self.record.rheumatic = sorted(found["rheumatic"])[0][1] if "rheumatic" in found else None

    def _lupus(self, found: dict[str, list[tuple[bool, str]]]) -> LupusDiagnosis | None:
        def best(group: str) -> tuple[bool, str]:
            return sorted(found[group])[0]  # confirmed (False) before suspected (True)

        if "sle" in found:
            suspected, display = best("sle")
            return LupusDiagnosis("sle", suspected, display)
        if "drug_induced_sle" in found and self.k.settings["drug_induced_lupus_counts"]:
            suspected, display = best("drug_induced_sle")
            return LupusDiagnosis("drug-induced", suspected, display)
        if "lupus_unspecified" in found and "cutaneous_lupus" not in found:
            suspected, display = best("lupus_unspecified")
            return LupusDiagnosis("unspecified", suspected, display)
        return None


def _best_display(found: dict[str, list[tuple[bool, str]]], group: str) -> str | None:
    """The display of the group's Condition, a confirmed one before a suspected one."""
    return sorted(found[group])[0][1] if group in found else None


def site_duffy_entry(resource: Raw, knowledge: Knowledge) -> Mapping[str, Any] | None:
    """The first of the site's Duffy phenotype code entries (settings order) that a Condition
    or Observation carries, else None."""
    entries = knowledge.duffy_entries
    carried = []
    for coding in terminology.codings(resource.get("code")):
        system, code = coding.get("system"), coding.get("code")
        # Read before validation: a system or code that is not a string matches nothing.
        if isinstance(system, str) and isinstance(code, str) and (system, code) in entries:
            carried.append((system, code))
    if not carried:
        return None  # the common case
    return next(entry for pair, entry in entries.items() if pair in carried)


def has_duffy_code(resource: Raw, knowledge: Knowledge) -> bool:
    """Whether a Condition or Observation carries one of the site's Duffy phenotype codes."""
    return site_duffy_entry(resource, knowledge) is not None


def is_duffy_null(resource: Raw, knowledge: Knowledge) -> bool:
    """A counted Condition, or a final Observation valued duffy-null (clinical rules §2.4)."""
    return duffy_null_by(resource, site_duffy_entry(resource, knowledge))


def duffy_null_by(resource: Raw, entry: Mapping[str, Any] | None) -> bool:
    """`is_duffy_null`, given the site's Duffy code entry the resource carries (or None)."""
    if entry is None:
        return False
    if resource.get("resourceType") == "Condition":
        return _condition_counts(resource) is not None
    if resource.get("status") not in COUNTED_OBSERVATION_STATUSES:
        return False
    value = resource.get("valueString") or ""
    concept = resource.get("valueCodeableConcept")
    codes = [c.get("code") for c in terminology.codings(concept)]
    return entry["value"] in ([value] + codes)


def _condition_counts(condition: Raw) -> bool | None:
    """None if the Condition does not count, else whether only suspected (clinical rules §2.1)."""
    clinical = {c.get("code") for c in terminology.codings(condition.get("clinicalStatus"))}
    if clinical and not clinical & {"active", "recurrence", "relapse"}:
        return None
    verification = {c.get("code") for c in terminology.codings(condition.get("verificationStatus"))}
    if not verification or "confirmed" in verification:
        return False
    if verification & {"provisional", "unconfirmed"}:
        return True
    return None  # differential, refuted, entered-in-error
