"""Gathering the FHIR data a service needs: from the request's prefetch, per key.

A key present with a resource or a Bundle is data; a key present as `null` or an empty
searchset means "the EHR has no data" (not an error, nothing to fetch); a key that is absent
must be obtained some other way, and when there is no way the call cannot be answered (412).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FhirResource = dict[str, Any]


class PreconditionFailed(Exception):
    """Data the rules need is missing and the request gave no way to get it (HTTP 412)."""


@dataclass
class GatheredData:
    # Per prefetch key: the resources as raw FHIR JSON, Bundles flattened to their entries.
    resources: dict[str, list[FhirResource]] = field(default_factory=dict)
    # Per prefetch key that could not be obtained: a short reason without PHI or tokens.
    unavailable: dict[str, str] = field(default_factory=dict)

    def all_resources(self) -> list[FhirResource]:
        return [resource for key in self.resources for resource in self.resources[key]]


def flatten(value: FhirResource | None) -> list[FhirResource]:
    """A prefetch value as a list of resources; search `outcome` entries are not data."""
    if value is None:
        return []
    if value.get("resourceType") != "Bundle":
        return [value]
    return [
        entry["resource"]
        for entry in value.get("entry") or []
        if isinstance(entry, Mapping)
        and isinstance(entry.get("resource"), Mapping)
        and (entry.get("search") or {}).get("mode") != "outcome"
    ]


def gather(
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    prefetch: Mapping[str, Any] | None,
    fhir_server: str | None,
    access_token: str | None,
    config: Mapping[str, Any],
) -> GatheredData:
    """Resources per prefetch key, from the prefetch; raises PreconditionFailed when a key is
    absent (fetching absent keys from `fhir_server` is not implemented yet)."""
    prefetch = prefetch or {}
    missing = [key for key in templates if key not in prefetch]
    if missing:
        raise PreconditionFailed(f"prefetch keys not supplied: {', '.join(sorted(missing))}")
    return GatheredData(resources={key: flatten(prefetch[key]) for key in templates})
