"""Which rules would read a kind of data's absence (clinical rules §1.2, §2.6 v4: data that
could not be read is not absent data). When a kind listed for a rule could not be read (a
failed fetch, an OperationOutcome, a time-out, a history cut short), the rule stays silent and
the data-missing card (DATA_QUALITY, first in the answer) says what to check. Rules not silenced
still speak from the data that did arrive: a finding made from data present is true whatever
else is missing (an ANC of 0.3 is severe neutropenia even when the temperatures are missing).

Every rule of the catalogue is listed (tests/rules/test_unreadable.py checks it), so a new rule
has to say what it reads as absent."""

from __future__ import annotations

from collections.abc import Mapping

from cds_service.record import PatientRecord

SILENT_WITHOUT: Mapping[str, frozenset[str]] = {
    # The nadir-window branch says "no WBC drawn since the cyclophosphamide dose"; the other
    # branches need counts present.
    "FEBRILE_NEUTROPENIA": frozenset({"counts"}),
    # From counts present; fever lines only when a fever is found.
    "NEUTROPENIA_SEVERE": frozenset(),
    # From a methotrexate schedule present; counts present only raise it to critical.
    "METHOTREXATE_DAILY_DOSING": frozenset(),
    "NEUTROPENIA_MODERATE": frozenset(),
    # From counts and drugs present (drugs.py words a weight or genotype it could not read).
    "DRUG_CYTOPENIA_DOSE_REVIEW": frozenset(),
    # "No TPMT/NUDT15 result on file".
    "THIOPURINE_PGX": frozenset({"phenotypes"}),
    "LYMPHOPENIA_PROFOUND": frozenset(),
    "LYMPHOPENIA_INFO": frozenset(),
    # Variant (a) ("no tier A drug") checks the medications itself; (b) is from counts present.
    "LEUKOPENIA_MONITOR": frozenset(),
    # Offers rituximab as treatment only when no rituximab was given in 12 months.
    "REFRACTORY_LEUKOPENIA_REFERRAL": frozenset({"medications"}),
    # "No WBC on file", "monitoring overdue": the latest WBC, and when the drug was started or
    # its dose increased (from every medication record).
    "CBC_STALE": frozenset({"counts", "medications"}),
    "DATA_QUALITY": frozenset(),
    "STEROID_LEUKOCYTOSIS_NOTE": frozenset(),
    # From counts present or a dangerous combination of drugs present.
    "ORDER_MYELOTOXIC_LOW_COUNTS": frozenset(),
    # "No WBC in the last 30 days".
    "ORDER_NO_RECENT_CBC": frozenset({"counts"}),
    # "No febrile neutropenia found (no fever with ANC < 1.0)".
    "GCSF_CAUTION": frozenset({"counts", "temperatures"}),
}


def silenced(rule: str, record: PatientRecord) -> bool:
    """Whether `rule` must stay silent because data it would read as absent could not be
    read. A rule not listed is silent whenever any data could not be read (the safe side)."""
    if not record.unreadable:
        return False
    kinds = SILENT_WITHOUT.get(rule)
    return kinds is None or not kinds.isdisjoint(record.unreadable)
