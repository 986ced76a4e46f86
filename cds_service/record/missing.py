"""Data that could not be read, by kind (clinical rules §1.2, §2.6 v4): the prefetch keys of
hooks/*.yaml grouped into the kinds of data the rules reason about. A kind that could not be
read is never absent data: the rules that would read its absence stay silent
(`rules/unreadable.py`) and one data-missing card says what to check."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

# Prefetch key -> kind of data. A key not listed is its own kind.
DATA_KINDS = {
    "patient": "patient",
    "conditions": "conditions",
    "medicationStatements": "medications",
    "medicationRequests": "medications",
    "medicationAdministrations": "medications",
    "medications": "medications",  # the referenced Medication resources (fhir/gather.py)
    "counts": "counts",
    "temperatures": "temperatures",
    "weights": "weights",
    "phenotypes": "phenotypes",
}


def unreadable_kinds(
    unavailable: Mapping[str, str],
    incomplete: Mapping[str, str],
    read_back_to: Mapping[str, datetime | None],
) -> dict[str, datetime | None]:
    """Kind -> the date before which its results could not be read (None: nothing could be
    read, or results of any date may be missing). A kind read in part through one key and not
    at all through another counts as not read."""
    kinds: dict[str, datetime | None] = {}
    for key in incomplete:
        kind = DATA_KINDS.get(key, key)
        cut = read_back_to.get(key)
        if kind in kinds:
            earlier = kinds[kind]
            cut = None if earlier is None or cut is None else max(earlier, cut)
        kinds[kind] = cut
    for key in unavailable:
        kinds[DATA_KINDS.get(key, key)] = None
    return kinds


def read_since_kinds(read_since: Mapping[str, datetime]) -> dict[str, datetime]:
    return {DATA_KINDS.get(key, key): since for key, since in read_since.items()}
