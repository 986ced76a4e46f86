"""The order hooks' draft orders (`context.draftOrders`, order-select and order-sign), read once
when the request is parsed: every entry in order, so the record can say which one could not be
read, and the selections of order-select. Gathering (their Medications resolved) and the
record (`record/drafts.py`) both read this one view, never the request's JSON again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Raw = dict[str, Any]


@dataclass(frozen=True)
class DraftOrders:
    # Each entry's resource, in the Bundle's order; None for an entry that holds no resource
    # (the record notes it for DATA_QUALITY rather than dropping it silently).
    entries: tuple[Raw | None, ...]
    # order-select: the orders being selected, the only ones evaluated; None on order-sign,
    # where every draft is evaluated (clinical rules §3).
    selections: tuple[str, ...] | None = None

    @property
    def resources(self) -> list[Raw]:
        """The readable entries: the orders and the Medications they refer to."""
        return [
            entry
            for entry in self.entries
            if entry is not None and entry["resourceType"] != "OperationOutcome"
        ]

    @property
    def medications(self) -> list[Raw]:
        """The Medication entries, which the drafts' `medicationReference` may name."""
        return [entry for entry in self.resources if entry["resourceType"] == "Medication"]


def read_draft_orders(bundle: Mapping[str, Any], selections: Sequence[str] | None) -> DraftOrders:
    """`bundle` is the validated `context.draftOrders` (a Bundle whose `entry` is a list)."""
    entries = bundle.get("entry")
    return DraftOrders(
        tuple(_resource_of(entry) for entry in (entries if isinstance(entries, list) else [])),
        None if selections is None else tuple(selections),
    )


def _resource_of(entry: Any) -> Raw | None:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    return resource if isinstance(kind, str) else None
