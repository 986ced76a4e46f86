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
`medications`: the service's own medication searches `_include` them, the others are read as soon
as the resource naming them arrives. Every FHIR call of one request is in flight at once (only
paging is sequential) and they share one budget of time (FHIR_DEADLINE_SECONDS) and bytes
(FHIR_MAX_CALL_BYTES): the answer comes as soon as the data is complete, or at the deadline.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cds_service.config import Settings
from cds_service.fhir.bundles import FhirResource, Page, medication_references, read_page
from cds_service.fhir.client import (
    CallBudget,
    FetchRound,
    FhirServer,
    FhirUnavailable,
    fhir_server_for,
    get_json,
)
from cds_service.fhir.templates import FHIR_ID, plan_query

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
    unavailable: str | None = None
    incomplete: str | None = None
    pages: int = 0
    # The URL without `_include`, for a server that refuses the first one (HTTP 400).
    fallback_url: str | None = None


# Searches whose resources name a Medication: the service's own queries ask the server to
# include it (`_include`), so no second round of reads is needed where the server supports it.
MEDICATION_INCLUDES = {
    holder: f"_include={holder}:medication"
    for holder in ("MedicationRequest", "MedicationStatement", "MedicationAdministration")
}
# Page size of the service's own searches. A template's `_count` is a page size, not a limit
# (the prefetch holds every page), and servers' defaults are often 20-50: small pages would
# make paging, the only sequential part, take several rounds. Servers cap it to their maximum.
OWN_PAGE_SIZE = 200


def own_search(relative_url: str, resource_type: str | None) -> str:
    """The search as the service runs it itself (not bound by the prefetch query rules):
    pages of at least OWN_PAGE_SIZE, and Medications `_include`d for the types naming one."""
    path, question, query = relative_url.partition("?")
    if not question:
        return relative_url  # a read, not a search
    parameters = [p for p in query.split("&") if p and not _is_small_count(p)]
    names = {p.split("=", 1)[0] for p in parameters}
    if "_count" not in names:
        parameters.append(f"_count={OWN_PAGE_SIZE}")
    include = MEDICATION_INCLUDES.get(resource_type or "")
    if include and "_include" not in names:
        parameters.append(include)
    return f"{path}?{'&'.join(parameters)}"


def _is_small_count(parameter: str) -> bool:
    name, _, value = parameter.partition("=")
    return name == "_count" and (not value.isdigit() or int(value) < OWN_PAGE_SIZE)


class _Gathering:
    """One hook call's data: the prefetch read, and every missing piece fetched in one round
    (FetchRound): each key's query, next pages as their previous page arrives, Medications
    as soon as a resource naming them arrives."""

    def __init__(
        self,
        server: FhirServer | None,
        no_access: str,
        config: Settings,
        context_resources: list[FhirResource],
    ) -> None:
        self.server, self.no_access, self.config = server, no_access, config
        self.budget = CallBudget(config.fhir_deadline_seconds, config.fhir_max_call_bytes)
        self.round = FetchRound(self.budget, config)
        self.keys: dict[str, _KeyData] = {}
        self.fetched: set[str] = set()
        self.unusable: set[str] = set()
        self.context_resources = context_resources
        # Medication URL -> None while asked, "" when read, else why it could not be read.
        self.medication_reads: dict[str, str | None] = {}
        self.medication_resources: list[FhirResource] = []

    # --- keys ---

    def start_key(self, key: str, template: str, context: Mapping[str, Any], prefetch: Any) -> None:
        query = plan_query(template, context)
        if key in prefetch:
            if prefetch[key] is None:
                self.keys[key] = _KeyData()
                return
            page = read_page(prefetch[key], query.resource_type)
            if page.problem is None:
                self.keys[key] = _KeyData()
                self._take_page(key, page, query.resource_type)
                return
            problem = f"the prefetch held {page.problem}"
            self.unusable.add(key)
        else:
            problem = "not in the prefetch"
        if self.server is None:
            self.keys[key] = _KeyData(unavailable=f"{problem}; not fetched: {self.no_access}")
        elif query.relative_url is None:
            self.keys[key] = _KeyData(
                unavailable=f"{problem}; not fetched: {query.unfilled_token} has no value"
            )
        else:
            relative_url = own_search(query.relative_url, query.resource_type)
            fallback = query.relative_url if relative_url != query.relative_url else None
            self.keys[key] = _KeyData(fallback_url=fallback and self.server.url(fallback))
            self.fetched.add(key)
            self._fetch_page(key, self.server.url(relative_url), query.resource_type)

    def _get(self, url: str, handle: Callable[[Any], None]) -> None:
        """GET `url` from fhirServer in this call's round; `handle` gets the answer."""
        server = self.server
        assert server is not None
        self.round.submit(partial(get_json, server, url, self.budget, self.config), handle)

    def _fetch_page(self, key: str, url: str, expected_type: str | None) -> None:
        self._get(url, partial(self._on_page, key, url, expected_type))

    def _on_page(self, key: str, url: str, expected_type: str | None, value: Any) -> None:
        data = self.keys[key]
        first = data.pages == 0
        if isinstance(value, FhirUnavailable):
            if first and data.fallback_url and value.status == 400:
                # A server that refuses `_include` (or the page size) is asked again with the
                # template's own query; the Medications are then read one by one.
                self._fetch_page(key, data.fallback_url, expected_type)
                data.fallback_url = None
            elif first:
                data.unavailable = str(value)
            else:
                # The first page (the newest results: queries sort by -date) is still used.
                data.incomplete = f"later pages: {value}"
            return
        page = read_page(value, expected_type)
        if page.problem:
            if first:
                data.unavailable = f"the FHIR server sent {page.problem}"
            else:
                data.incomplete = f"a later page held {page.problem}"
            return
        self._take_page(key, page, expected_type)

    def _take_page(self, key: str, page: Page, expected_type: str | None) -> None:
        data = self.keys[key]
        data.resources += page.resources
        data.pages += 1
        self.medication_resources += page.medications
        self.read_medications(page.resources)
        if page.next_url is None:
            return
        if data.pages >= self.config.fhir_max_pages:
            data.incomplete = f"only the first {data.pages} pages were read"
        elif self.server is None:
            data.incomplete = f"later pages: {self.no_access}"
        else:
            self._fetch_page(key, page.next_url, expected_type)

    # --- Medications ---

    def _medication_url(self, reference: str) -> tuple[str | None, str | None]:
        """The URL to read a referenced Medication from, or why it cannot be read."""
        match = MEDICATION_REFERENCE.fullmatch(reference)
        if match is None:
            return None, "a reference that cannot be resolved"
        if self.server is None:
            return None, "no FHIR access to read it"
        url = f"{match['base'] or self.server.url('')}Medication/{match['id']}"
        if not self.server.owns(url):
            return None, "a reference outside fhirServer, not followed"
        return url, None

    def _known_medication_ids(self) -> set[Any]:
        return {
            r.get("id")
            for r in self.medication_resources + self.context_resources
            if r.get("resourceType") == "Medication"
        }

    def read_medications(self, resources: Iterable[FhirResource]) -> None:
        """Starts reading the Medications these resources name and nobody has read yet."""
        known = self._known_medication_ids()
        for reference in medication_references(resources):
            match = MEDICATION_REFERENCE.fullmatch(reference)
            if match and match["id"] in known:
                continue
            url, _ = self._medication_url(reference)
            if url is None or url in self.medication_reads:
                continue
            self.medication_reads[url] = None
            self._get(url, partial(self._on_medication, url))

    def _on_medication(self, url: str, value: Any) -> None:
        if isinstance(value, FhirUnavailable):
            self.medication_reads[url] = str(value)
            return
        page = read_page(value, "Medication")
        if page.problem:
            self.medication_reads[url] = f"the FHIR server sent {page.problem}"
            return
        self.medication_reads[url] = ""
        self.medication_resources += page.resources

    def medication_problems(self, gathered: GatheredData) -> list[str]:
        """Why referenced Medications are missing, one entry per reference.

        A draft order's own Medication that cannot be had is not reported here: drafts are
        often not yet stored on the FHIR server (404), the reference's display still names the
        drug, and the record says when it does not (a draft note on the DATA_QUALITY card)."""
        gathered_resources = gathered.all_resources()
        known = self._known_medication_ids()
        drafts_only = medication_references(self.context_resources) - medication_references(
            gathered_resources
        )
        problems = []
        for reference in medication_references(gathered_resources + self.context_resources):
            match = MEDICATION_REFERENCE.fullmatch(reference)
            if match and match["id"] in known:
                continue
            if reference in drafts_only:
                continue
            url, problem = self._medication_url(reference)
            if url is not None:
                problem = self.medication_reads.get(url) or "not read"
            problems.append(problem or "not read")
        return problems


def _unique_by_id(resources: list[FhirResource]) -> list[FhirResource]:
    """One copy of each Medication (the same one may come from `_include`s and reads)."""
    seen: set[Any] = set()
    unique = []
    for resource in resources:
        key = resource.get("id")
        if key is None or key not in seen:
            unique.append(resource)
            seen.add(key)
    return unique


def _reasons(reasons: Mapping[str, str]) -> str:
    return "; ".join(f"{key}: {reason}" for key, reason in sorted(reasons.items()))


def gather(
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    prefetch: Mapping[str, Any] | None,
    fhir_server: str | None,
    access_token: str | None,
    config: Settings,
    context_resources: Iterable[FhirResource] = (),
) -> GatheredData:
    """Resources per prefetch key, from the prefetch and from `fhir_server`; keys that could
    not be obtained are in `unavailable`. Raises PreconditionFailed (and nothing else) when a
    key is absent and the request gives no way to fetch it, or when no data arrived at all.
    `context_resources` (the order hooks' draft orders) have their Medications resolved too."""
    prefetch = prefetch or {}
    try:
        server: FhirServer | None = fhir_server_for(fhir_server, access_token, config)
        no_access = ""
    except FhirUnavailable as error:
        server, no_access = None, str(error)
    absent = sorted(key for key in templates if key not in prefetch)
    if absent and server is None:
        raise PreconditionFailed(f"prefetch keys not supplied ({', '.join(absent)}): {no_access}")

    drafts = list(context_resources)
    gathering = _Gathering(server, no_access, config, drafts)
    for key, template in templates.items():
        gathering.start_key(key, template, context, prefetch)
    gathering.read_medications(drafts)
    gathering.round.run()

    gathered = _assemble(templates, gathering.keys)
    gathered.sources = _sources(
        templates, prefetch, gathering.unusable, gathering.fetched, gathered
    )
    if templates and len(gathered.unavailable) == len(templates):
        raise PreconditionFailed(f"no FHIR data obtained: {_reasons(gathered.unavailable)}")
    if gathering.medication_resources:
        gathered.resources[MEDICATIONS_KEY] = _unique_by_id(gathering.medication_resources)
    if problems := gathering.medication_problems(gathered):
        reason = f"{len(problems)} referenced Medications not obtained: {problems[0]}"
        target = gathered.incomplete if gathering.medication_resources else gathered.unavailable
        target[MEDICATIONS_KEY] = reason
    _log_summary(len(gathering.fetched), gathered)
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
    fetched: Collection[str],
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
