"""Reading one prefetch value or FHIR response: the resources it holds, whether it reports an
error instead of data, where its next page is, and which Medications it refers to.

Values come from outside, so nothing here assumes a shape: a non-object, a missing `entry` or a
string where an object belongs is read as "no usable data", never as an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# JSON objects come out of orjson as dicts: `isinstance(x, dict)` checks them (the Mapping
# ABC's check costs five times as much, on every entry of every Bundle).
FhirResource = dict[str, Any]

MEDICATION_HOLDERS = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")


@dataclass
class Page:
    """One value (a resource or a Bundle page) as data for a template of a given type."""

    # Resources of the template's type.
    resources: list[FhirResource] = field(default_factory=list)
    # Medication resources that came along (e.g. `_include`d by a MedicationRequest search).
    medications: list[FhirResource] = field(default_factory=list)
    next_url: str | None = None
    # Why the value is not data (an OperationOutcome, the wrong resource types); None = data,
    # possibly none at all (an empty searchset).
    problem: str | None = None


def _resource_type(value: Any) -> str | None:
    kind = value.get("resourceType") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) else None


def _is_outcome_entry(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    search = entry.get("search")
    mode = search.get("mode") if isinstance(search, dict) else None
    return mode == "outcome" or _resource_type(entry.get("resource")) == "OperationOutcome"


def _entries(bundle: Mapping[str, Any]) -> list[Any]:
    entries = bundle.get("entry")
    return entries if isinstance(entries, list) else []


def flatten(value: Any) -> list[FhirResource]:
    """A resource as a list of one; a Bundle as its entry resources, minus error outcomes."""
    if _resource_type(value) is None:
        return []
    if value["resourceType"] != "Bundle":
        return [value]
    return [
        entry["resource"]
        for entry in _entries(value)
        if isinstance(entry, dict)
        and not _is_outcome_entry(entry)
        and _resource_type(entry.get("resource")) is not None
    ]


def next_link(value: Any) -> str | None:
    if _resource_type(value) != "Bundle" or not isinstance(value.get("link"), list):
        return None
    for link in value["link"]:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else None
    return None


def read_page(value: Any, expected_type: str | None) -> Page:
    """`value` read as data for a template asking for `expected_type` (None: any type)."""
    kind = _resource_type(value)
    if kind is None:
        return Page(problem="not a FHIR resource")
    if kind == "OperationOutcome":
        return Page(problem="an OperationOutcome instead of data")
    page = Page(next_url=next_link(value))
    wrong_types = 0
    for resource in flatten(value):
        if expected_type in (None, resource["resourceType"]):
            page.resources.append(resource)
        elif resource["resourceType"] == "Medication":
            page.medications.append(resource)
        else:
            wrong_types += 1
    if not page.resources and not page.medications:
        # A bundle of outcomes is the client's or server's way of saying the search failed.
        if kind == "Bundle" and any(_is_outcome_entry(entry) for entry in _entries(value)):
            return Page(problem="an OperationOutcome instead of data")
        if wrong_types:
            return Page(problem=f"resources of the wrong type (expected {expected_type})")
    return page


def medication_references(resources: Iterable[FhirResource]) -> set[str]:
    """`medicationReference`s of medication requests, statements and administrations, except
    references to contained resources (those are already in the resource)."""
    references = set()
    for resource in resources:
        if resource.get("resourceType") not in MEDICATION_HOLDERS:
            continue
        medication = resource.get("medicationReference")
        reference = medication.get("reference") if isinstance(medication, dict) else None
        if isinstance(reference, str) and reference and not reference.startswith("#"):
            references.add(reference)
    return references
