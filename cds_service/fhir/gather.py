"""Gathering the FHIR data a service needs, per prefetch key, from the request's prefetch and,
where that falls short, from the EHR's FHIR server.

Per key:
- present with data: used; a Bundle's `next` pages are read too, until the results cover the
  history the rules need (`HistoryHorizon`, clinical rules §2.6), within the call's budget;
- present as `null` or an empty searchset: the EHR has no data; nothing is fetched;
- present as an OperationOutcome (or a Bundle of outcomes) or as something unusable: the client
  could not get it, so it is fetched if the request allows, else marked unavailable;
- absent: fetched; when the request gives no way to fetch (no fhirServer, no usable token) the
  call cannot be answered (412).
Medications referred to by `medicationReference` and not already gathered are read under
`medications`: the service's own medication searches `_include` them, the others are searched
by id in batches (`Medication?_id=a,b,c`) as soon as the resource naming them arrives, at most
MAX_MEDICATION_READS per call (more are reported missing, never guessed). Every FHIR call of one
request is in flight at once (only paging is sequential) and they share one budget of time
(FHIR_DEADLINE_SECONDS) and bytes (FHIR_MAX_CALL_BYTES): the answer comes as soon as the data
is complete, or at the deadline.

Paging (clinical rules §2.6): a search is read page after page (its `next` links, from the
prefetch or from the service's own search) until the results held reach back past the key's
horizon, whatever the page size; a page out of date order means the server did not sort, so
reading goes on to the end. A key cut short before its horizon is `incomplete` with the date
before which its results could not be read (`read_back_to`). When the horizon is covered but a
kind of result whose last value of any age the rules quote is not among the results held, one
more search asks for it (`_count=1`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from time import monotonic
from typing import Any, Literal, Protocol

from cds_service.config import Settings
from cds_service.fhir.bundles import FhirResource, Page, medication_references, read_page
from cds_service.fhir.client import (
    CallBudget,
    FetchObserver,
    FetchRound,
    FhirServer,
    FhirUnavailable,
    fhir_server_for,
    get_json,
    unobserved,
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
    # Per key whose data arrived but may be partial (its history cut short before the
    # horizon, Medications not obtained): a short reason without PHI or tokens.
    incomplete: dict[str, str] = field(default_factory=dict)
    # Per incomplete key with a dated horizon: the date before which its results could not be
    # read (None: results of any date may be missing, e.g. a server that does not sort).
    read_back_to: dict[str, datetime | None] = field(default_factory=dict)
    # Per key whose horizon was covered but whose older results could not be searched for the
    # latest value of any age: the oldest result held (absence before it is unknown).
    read_since: dict[str, datetime] = field(default_factory=dict)
    # Per prefetch key, for the metrics: (what the prefetch held: present, null, absent or
    # unusable; the result: used, fetched or unavailable).
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)

    def all_resources(self) -> list[FhirResource]:
        return [resource for key in self.resources for resource in self.resources[key]]


class HistoryHorizon(Protocol):
    """How far back the rules read each key's results (record/reading_plan.py implements it
    from the rules' declared needs)."""

    def result_time(self, resource: FhirResource) -> datetime | None:
        """The date a result is sorted by (servers sort `-date` on it)."""
        ...

    def start(self, key: str, resources: Sequence[FhirResource]) -> datetime | None:
        """The date the key's results must reach back past, given those held; None: the whole
        search is needed (no horizon for this key, or results of any age)."""
        ...

    def missing_latest(self, key: str, resources: Sequence[FhirResource]) -> list[str]:
        """Code lists (`system|code,...`) of the kinds of result whose last value of any age
        the rules quote and that `resources` lack."""
        ...


# What the results held cover: read more (or say the history is cut short), only ask for the
# latest values missing, or enough.
Coverage = Literal["needed", "latest", "covered"]


@dataclass
class _KeyData:
    resources: list[FhirResource] = field(default_factory=list)
    unavailable: str | None = None
    incomplete: str | None = None
    pages: int = 0
    # The URL without `_include`, for a server that refuses the first one (HTTP 400).
    fallback_url: str | None = None
    # The search relative to fhirServer as the service runs it (for the latest-value search).
    own_query: str | None = None
    # Dates of the results read, in the order read: the oldest, and whether they came newest
    # first (a page out of date order means the server did not sort: read to the end).
    oldest: datetime | None = None
    in_order: bool = True
    read_back_to: datetime | None = None
    read_since: datetime | None = None


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


def latest_search(relative_url: str, codes: str) -> str:
    """The key's search narrowed to `codes`, newest result only: the last value of any age."""
    path, _, query = relative_url.partition("?")
    kept = [
        p
        for p in query.split("&")
        if p and p.split("=", 1)[0] not in ("code", "_count", "_include", "_sort")
    ]
    return f"{path}?{'&'.join([*kept, f'code={codes}', '_sort=-date', '_count=1'])}"


# Medications referenced but not included by a search are searched by id, this many per
# search (a URL of 50 ids of up to 64 characters stays under 4 kB), and at most
# MAX_MEDICATION_READS per hook call: a call naming thousands must not become thousands of
# GETs (issue 22). Beyond the cap the references are reported as not obtained.
MEDICATION_BATCH = 50
MAX_MEDICATION_READS = 500


class _Gathering:
    """One hook call's data: the prefetch read, and every missing piece fetched in one round
    (FetchRound): each key's query, next pages as their previous page arrives (until the
    horizon is covered), Medications as soon as a resource naming them arrives."""

    def __init__(
        self,
        server: FhirServer | None,
        no_access: str,
        config: Settings,
        context_resources: list[FhirResource],
        horizon: HistoryHorizon | None = None,
        fetch_by: float | None = None,
        observe: FetchObserver = unobserved,
    ) -> None:
        self.server, self.no_access, self.config = server, no_access, config
        self.horizon = horizon
        self.observe = observe
        # The fetch ends at the hook call's deadline (counted from its arrival), else after
        # FHIR_DEADLINE_SECONDS from now.
        seconds = config.fhir_deadline_seconds if fetch_by is None else fetch_by - monotonic()
        self.budget = CallBudget(seconds, config.fhir_max_call_bytes)
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
        own = query.relative_url and own_search(query.relative_url, query.resource_type)
        if key in prefetch:
            if prefetch[key] is None:
                self.keys[key] = _KeyData()
                return
            page = read_page(prefetch[key], query.resource_type)
            if page.problem is None:
                self.keys[key] = _KeyData(own_query=own)
                self._take_page(key, page, query.resource_type)
                return
            problem = f"the prefetch held {page.problem}"
            self.unusable.add(key)
        else:
            problem = "not in the prefetch"
        if self.server is None:
            self.keys[key] = _KeyData(unavailable=f"{problem}; not fetched: {self.no_access}")
        elif query.relative_url is None or own is None:
            self.keys[key] = _KeyData(
                unavailable=f"{problem}; not fetched: {query.unfilled_token} has no value"
            )
        else:
            fallback = query.relative_url if own != query.relative_url else None
            self.keys[key] = _KeyData(
                fallback_url=fallback and self.server.url(fallback), own_query=own
            )
            self.fetched.add(key)
            self._fetch_page(key, self.server.url(own), query.resource_type)

    def _get(self, url: str, handle: Callable[[Any], None]) -> None:
        """GET `url` from fhirServer in this call's round; `handle` gets the answer."""
        server = self.server
        assert server is not None
        call = partial(get_json, server, url, self.budget, self.config, self.observe)
        self.round.submit(call, handle)

    def _fetch_page(self, key: str, url: str, expected_type: str | None) -> None:
        self._get(url, partial(self._on_page, key, url, expected_type))

    def _on_page(self, key: str, url: str, expected_type: str | None, value: Any) -> None:
        data = self.keys[key]
        first = data.pages == 0
        if isinstance(value, FhirUnavailable):
            if first and data.fallback_url and value.status == 400:
                # A server that refuses `_include` (or the page size) is asked again with the
                # template's own query; the Medications are then searched by id.
                self._fetch_page(key, data.fallback_url, expected_type)
                data.fallback_url = None
            elif first:
                data.unavailable = str(value)
            else:
                # The pages read (the newest results: queries sort by -date) are still used.
                self._cut_short(key, f"later pages: {value}")
            return
        page = read_page(value, expected_type)
        if page.problem:
            if first:
                data.unavailable = f"the FHIR server sent {page.problem}"
            else:
                self._cut_short(key, f"a later page held {page.problem}")
            return
        self._take_page(key, page, expected_type)

    def _take_page(self, key: str, page: Page, expected_type: str | None) -> None:
        data = self.keys[key]
        data.resources += page.resources
        data.pages += 1
        self.medication_resources += page.medications
        self.read_medications(page.resources)
        if page.next_url is None:
            return  # the whole search is read (its dates are not needed: nothing to decide)
        self._note_dates(data, page.resources)
        coverage = self._coverage(key)
        if coverage == "latest":
            self._search_latest(key, expected_type)
        elif coverage == "covered":
            return
        elif data.pages >= self.config.fhir_max_pages:
            self._cut_short(key, f"only the first {data.pages} pages were read")
        elif self.server is None:
            self._cut_short(key, f"later pages: {self.no_access}")
        else:
            self._fetch_page(key, page.next_url, expected_type)

    # --- the history horizon (clinical rules §2.6) ---

    def _note_dates(self, data: _KeyData, resources: Iterable[FhirResource]) -> None:
        if self.horizon is None:
            return
        for resource in resources:
            time = self.horizon.result_time(resource)
            if time is None:
                continue
            if data.oldest is not None and time > data.oldest:
                data.in_order = False  # the server did not sort: any later page may matter
            data.oldest = time if data.oldest is None else min(data.oldest, time)

    def _coverage(self, key: str) -> Coverage:
        data = self.keys[key]
        if self.horizon is None:
            return "needed"
        start = self.horizon.start(key, data.resources)
        if start is None or not data.in_order or data.oldest is None or data.oldest >= start:
            return "needed"
        return "latest" if self.horizon.missing_latest(key, data.resources) else "covered"

    def _cut_short(self, key: str, reason: str) -> None:
        """The key's search stopped before its end: say so if the horizon was not covered."""
        data = self.keys[key]
        coverage = self._coverage(key)
        if coverage == "needed":
            data.incomplete = reason
            has_horizon = self.horizon is not None and self.horizon.start(key, []) is not None
            data.read_back_to = data.oldest if has_horizon and data.in_order else None
        elif coverage == "latest":
            data.read_since = data.oldest

    def _search_latest(self, key: str, expected_type: str | None) -> None:
        """One search per kind of result whose last value of any age is not held."""
        data = self.keys[key]
        assert self.horizon is not None
        if self.server is None or data.own_query is None:
            data.read_since = data.oldest
            return
        for codes in self.horizon.missing_latest(key, data.resources):
            url = self.server.url(latest_search(data.own_query, codes))
            self._get(url, partial(self._on_latest, key, expected_type))

    def _on_latest(self, key: str, expected_type: str | None, value: Any) -> None:
        data = self.keys[key]
        page = Page(problem="no answer") if isinstance(value, FhirUnavailable) else None
        page = page or read_page(value, expected_type)
        if page.problem:
            data.read_since = data.oldest
            return
        held = {r.get("id") for r in data.resources}
        data.resources += [r for r in page.resources if r.get("id") not in held]

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
        """Starts reading the Medications these resources name and nobody has read yet: those
        on fhirServer's base in `_id` searches of MEDICATION_BATCH, others one by one, at most
        MAX_MEDICATION_READS per call."""
        if self.server is None:
            return
        known = self._known_medication_ids()
        by_id: dict[str, str] = {}  # id -> URL, for the `_id` searches
        own_base = self.server.url("")
        for reference in sorted(medication_references(resources)):
            match = MEDICATION_REFERENCE.fullmatch(reference)
            if match and match["id"] in known:
                continue
            url, _ = self._medication_url(reference)
            if match is None or url is None or url in self.medication_reads:
                continue
            if len(self.medication_reads) >= MAX_MEDICATION_READS:
                self.medication_reads[url] = (
                    f"more than {MAX_MEDICATION_READS} Medications referenced; not read"
                )
                continue
            self.medication_reads[url] = None
            if url == f"{own_base}Medication/{match['id']}":
                by_id[match["id"]] = url
            else:
                self._get(url, partial(self._on_medications, {match["id"]: url}, None))
        ids = list(by_id)
        for first in range(0, len(ids), MEDICATION_BATCH):
            batch = {i: by_id[i] for i in ids[first : first + MEDICATION_BATCH]}
            if len(batch) == 1:  # one is read (every server supports a read)
                [url] = batch.values()
                self._get(url, partial(self._on_medications, batch, None))
                continue
            search = f"Medication?_id={','.join(batch)}&_count={len(batch)}"
            self._get(self.server.url(search), partial(self._on_medications, batch, search))

    def _on_medications(self, wanted: dict[str, str], search: str | None, value: Any) -> None:
        """The answer to a Medication read or `_id` search (`search`: its query, for the
        fallback to reads when a server refuses it, and its next pages)."""
        if isinstance(value, FhirUnavailable):
            if search is not None and value.status == 400:
                for medication_id, url in wanted.items():  # no `_id` search here: read each
                    self._get(url, partial(self._on_medications, {medication_id: url}, None))
                return
            for url in wanted.values():
                self.medication_reads[url] = str(value)
            return
        page = read_page(value, "Medication")
        if page.problem:
            for url in wanted.values():
                self.medication_reads[url] = f"the FHIR server sent {page.problem}"
            return
        self.medication_resources += page.resources
        found = {str(r.get("id")) for r in page.resources}
        for medication_id in found & wanted.keys():
            self.medication_reads[wanted.pop(medication_id)] = ""
        if wanted and search is not None and page.next_url is not None:
            self._get(page.next_url, partial(self._on_medications, wanted, search))
            return
        for url in wanted.values():
            self.medication_reads[url] = "not found on the FHIR server"

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
    horizon: HistoryHorizon | None = None,
    fetch_by: float | None = None,
    observe_fetch: FetchObserver = unobserved,
) -> GatheredData:
    """Resources per prefetch key, from the prefetch and from `fhir_server`; keys that could
    not be obtained are in `unavailable`. Raises PreconditionFailed (and nothing else) when a
    key is absent and the request gives no way to fetch it, or when no data arrived at all.
    `context_resources` (the order hooks' draft orders) have their Medications resolved too.
    With a `horizon`, a search's pages are read until its results cover it; without one,
    every page is read (within the budget). `fetch_by` (a `monotonic()` time) ends the fetch;
    None: FHIR_DEADLINE_SECONDS from now. Each FHIR call is reported to `observe_fetch`."""
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
    gathering = _Gathering(server, no_access, config, drafts, horizon, fetch_by, observe_fetch)
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
            gathered.read_back_to[key] = data.read_back_to
        elif data.read_since is not None:
            gathered.read_since[key] = data.read_since
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
