"""Gathering the FHIR data a service needs, per prefetch key, from the request's prefetch and,
where that falls short, from the EHR's FHIR server.

Per key:
- present with data: used; a Bundle's `next` pages are read too (up to FHIR_MAX_PAGES);
- present as `null` or an empty searchset: the EHR has no data; nothing is fetched;
- present as an OperationOutcome (or a Bundle of outcomes) or as something unusable: the client
  could not get it, so it is fetched if the request allows, else marked unavailable;
- absent: fetched; when the request gives no way to fetch (no fhirServer, no usable token) the
  call cannot be answered (412).
Medications referred to by `medicationReference` and not already gathered are read under
`medications`. All FHIR calls of one request share one deadline (FHIR_DEADLINE_SECONDS).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from time import monotonic
from typing import Any

from cds_service.fhir_bundles import FhirResource, Page, medication_references, read_page
from cds_service.fhir_client import (
    FhirServer,
    FhirUnavailable,
    fhir_server_for,
    get_json,
    run_concurrently,
)
from cds_service.fhir_templates import FHIR_ID, plan_query

logger = logging.getLogger(__name__)

# Extra key of GatheredData.resources: Medication resources referred to by the other keys.
MEDICATIONS_KEY = "medications"
MEDICATION_REFERENCE = re.compile(rf"(?P<base>.+/)?Medication/(?P<id>{FHIR_ID})(/_history/.+)?")


class PreconditionFailed(Exception):
    """Data the rules need is missing and the request gave no way to get it (HTTP 412)."""


@dataclass
class GatheredData:
    # Per prefetch key: the resources as raw FHIR JSON, Bundles flattened to their entries.
    resources: dict[str, list[FhirResource]] = field(default_factory=dict)
    # Per prefetch key that could not be obtained: a short reason without PHI or tokens.
    unavailable: dict[str, str] = field(default_factory=dict)
    # Per key whose data arrived but may be partial (page cap, a later page failed or pointed
    # outside fhirServer, Medications not obtained): a short reason without PHI or tokens.
    incomplete: dict[str, str] = field(default_factory=dict)
    # Per prefetch key, for the metrics: (what the prefetch held: present, null, absent or
    # unusable; the result: used, fetched or unavailable).
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)

    def all_resources(self) -> list[FhirResource]:
        return [resource for key in self.resources for resource in self.resources[key]]


@dataclass
class _KeyData:
    resources: list[FhirResource] = field(default_factory=list)
    medications: list[FhirResource] = field(default_factory=list)
    unavailable: str | None = None
    incomplete: str | None = None


def _follow_pages(
    first: Page,
    server: FhirServer,
    expected_type: str | None,
    deadline: float,
    config: Mapping[str, Any],
) -> _KeyData:
    data = _KeyData(list(first.resources), list(first.medications))
    next_url, pages = first.next_url, 1
    while next_url:
        if pages >= config["FHIR_MAX_PAGES"]:
            data.incomplete = f"only the first {pages} pages were read"
            break
        try:
            page = read_page(get_json(server, next_url, deadline, config), expected_type)
        except FhirUnavailable as error:
            data.incomplete = f"a later page is missing: {error}"
            break
        if page.problem:
            data.incomplete = f"a later page held {page.problem}"
            break
        data.resources += page.resources
        data.medications += page.medications
        next_url, pages = page.next_url, pages + 1
    return data


def _fetch_key(
    server: FhirServer,
    relative_url: str,
    expected_type: str | None,
    deadline: float,
    config: Mapping[str, Any],
    keep_first_page: Callable[[Page], None],
) -> _KeyData:
    try:
        value = get_json(server, server.url(relative_url), deadline, config)
    except FhirUnavailable as error:
        return _KeyData(unavailable=str(error))
    first = read_page(value, expected_type)
    if first.problem:
        return _KeyData(unavailable=f"the FHIR server sent {first.problem}")
    # If later pages miss the deadline, the task is abandoned: the first page (the newest
    # results, queries sort by -date) is still used, with the key marked incomplete.
    keep_first_page(first)
    return _follow_pages(first, server, expected_type, deadline, config)


def _fetch_medication(
    server: FhirServer, url: str, deadline: float, config: Mapping[str, Any]
) -> list[FhirResource]:
    page = read_page(get_json(server, url, deadline, config), "Medication")
    if page.problem:
        raise FhirUnavailable(f"the FHIR server sent {page.problem}")
    return page.resources


def _resolve_medications(
    gathered: GatheredData,
    included: list[FhirResource],
    server: FhirServer | None,
    deadline: float,
    config: Mapping[str, Any],
    context_resources: list[FhirResource],
) -> None:
    """Adds the Medications referred to but not yet gathered under MEDICATIONS_KEY.

    A draft order's Medication that cannot be fetched for want of FHIR access is not reported
    here: its reference's display still names the drug, and the record says when it does not."""
    gathered_resources = gathered.all_resources() + included
    resources = gathered_resources + context_resources
    known = {r.get("id") for r in resources if r.get("resourceType") == "Medication"}
    drafts_only = medication_references(context_resources) - medication_references(
        gathered_resources
    )
    urls: set[str] = set()
    problems: list[str] = []
    for reference in medication_references(resources):
        match = MEDICATION_REFERENCE.fullmatch(reference)
        if match and match["id"] in known:
            continue
        if reference in drafts_only and (server is None or match is None):
            continue
        if match is None:
            problems.append("a reference that cannot be resolved")
        elif server is None:
            problems.append("no FHIR access to read it")
        elif not server.owns(url := f"{match['base'] or server.url('')}Medication/{match['id']}"):
            problems.append("a reference outside fhirServer, not followed")
        else:
            urls.add(url)
    tasks = {url: partial(_fetch_medication, server, url, deadline, config) for url in urls}
    fetched = list(included)
    for outcome in run_concurrently(tasks, deadline, config).values():
        if isinstance(outcome, FhirUnavailable):
            problems.append(str(outcome))
        else:
            fetched += outcome
    if fetched:
        gathered.resources.setdefault(MEDICATIONS_KEY, []).extend(fetched)
    if problems:
        reason = f"{len(problems)} referenced Medications not obtained: {problems[0]}"
        target = gathered.incomplete if fetched else gathered.unavailable
        target[MEDICATIONS_KEY] = reason


def _reasons(reasons: Mapping[str, str]) -> str:
    return "; ".join(f"{key}: {reason}" for key, reason in sorted(reasons.items()))


def gather(
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    prefetch: Mapping[str, Any] | None,
    fhir_server: str | None,
    access_token: str | None,
    config: Mapping[str, Any],
    context_resources: Iterable[FhirResource] = (),
) -> GatheredData:
    """Resources per prefetch key, from the prefetch and from `fhir_server`; keys that could
    not be obtained are in `unavailable`. Raises PreconditionFailed (and nothing else) when a
    key is absent and the request gives no way to fetch it, or when no data arrived at all.
    `context_resources` (the order hooks' draft orders) have their Medications resolved too."""
    deadline = monotonic() + config["FHIR_DEADLINE_SECONDS"]
    prefetch = prefetch or {}
    try:
        server: FhirServer | None = fhir_server_for(fhir_server, access_token, config)
        no_access = ""
    except FhirUnavailable as error:
        server, no_access = None, str(error)
    absent = sorted(key for key in templates if key not in prefetch)
    if absent and server is None:
        raise PreconditionFailed(f"prefetch keys not supplied ({', '.join(absent)}): {no_access}")

    settled: dict[str, _KeyData] = {}
    first_pages: dict[str, Page] = {}
    tasks: dict[str, Callable[[], _KeyData]] = {}
    unusable: set[str] = set()
    for key, template in templates.items():
        query = plan_query(template, context)
        if key in prefetch:
            if prefetch[key] is None:
                settled[key] = _KeyData()
                continue
            page = read_page(prefetch[key], query.resource_type)
            if page.problem is None:
                if page.next_url is None:
                    settled[key] = _KeyData(page.resources, page.medications)
                elif server is None:
                    settled[key] = _KeyData(
                        page.resources, page.medications, incomplete=f"later pages: {no_access}"
                    )
                else:
                    first_pages[key] = page
                    tasks[key] = partial(
                        _follow_pages, page, server, query.resource_type, deadline, config
                    )
                continue
            problem = f"the prefetch held {page.problem}"
            unusable.add(key)
        else:
            problem = "not in the prefetch"
        if server is None:
            settled[key] = _KeyData(unavailable=f"{problem}; not fetched: {no_access}")
        elif query.relative_url is None:
            settled[key] = _KeyData(
                unavailable=f"{problem}; not fetched: {query.unfilled_token} has no value"
            )
        else:
            tasks[key] = partial(
                _fetch_key,
                server,
                query.relative_url,
                query.resource_type,
                deadline,
                config,
                partial(first_pages.__setitem__, key),
            )

    for key, outcome in run_concurrently(tasks, deadline, config).items():
        if not isinstance(outcome, FhirUnavailable):
            settled[key] = outcome
        elif key in first_pages:
            first = first_pages[key]
            settled[key] = _KeyData(
                first.resources, first.medications, incomplete=f"later pages: {outcome}"
            )
        else:
            settled[key] = _KeyData(unavailable=str(outcome))

    gathered = _assemble(templates, settled)
    gathered.sources = _sources(templates, prefetch, unusable, tasks, gathered)
    if templates and len(gathered.unavailable) == len(templates):
        raise PreconditionFailed(f"no FHIR data obtained: {_reasons(gathered.unavailable)}")
    _resolve_medications(
        gathered,
        [m for data in settled.values() for m in data.medications],
        server,
        deadline,
        config,
        list(context_resources),
    )
    _log_summary(len(tasks), gathered)
    return gathered


def _assemble(templates: Iterable[str], settled: Mapping[str, _KeyData]) -> GatheredData:
    gathered = GatheredData()
    for key in templates:
        data = settled[key]
        if data.unavailable:
            gathered.unavailable[key] = data.unavailable
            continue
        gathered.resources[key] = data.resources
        if data.incomplete:
            gathered.incomplete[key] = data.incomplete
    return gathered


def _sources(
    templates: Iterable[str],
    prefetch: Mapping[str, Any],
    unusable: set[str],
    fetched: Mapping[str, Any],
    gathered: GatheredData,
) -> dict[str, tuple[str, str]]:
    sources = {}
    for key in templates:
        if key not in prefetch:
            held = "absent"
        elif prefetch[key] is None:
            held = "null"
        else:
            held = "unusable" if key in unusable else "present"
        if key in gathered.unavailable:
            result = "unavailable"
        elif key in fetched and held != "present":
            result = "fetched"
        else:
            result = "used"
        sources[key] = (held, result)
    return sources


def _log_summary(fetched_keys: int, gathered: GatheredData) -> None:
    # Keys and reasons only: they carry no patient data and no token.
    if gathered.unavailable or gathered.incomplete:
        logger.warning(
            "FHIR data partial (%d keys fetched); unavailable: %s; incomplete: %s",
            fetched_keys,
            _reasons(gathered.unavailable) or "none",
            _reasons(gathered.incomplete) or "none",
        )
    else:
        logger.info("FHIR data gathered (%d keys fetched)", fetched_keys)
