"""Paging by the rules' history horizon (clinical rules §2.6 v4): a search is read until the
results held cover what the rules need, whatever the EHR's page size, within the call's time
and byte budget; only a history cut short before the horizon is reported."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from cds_service.config import load_config
from cds_service.fhir.dates import as_datetime
from cds_service.fhir.gather import gather
from cds_service.record.reading_plan import ReadingHorizon
from cds_service.rules.reading import READING_NEEDS
from cds_service.services import load_site
from tests.support.builders import ALC, ANC, NOW, TEMPERATURE, WBC, fhir_authorization, observation
from tests.support.scenarios import SCENARIOS, call, request_of

from .conftest import CONTEXT, FHIR_SERVER, TOKEN, full_prefetch, searchset

FHIR_HEADERS = {"Content-Type": "application/fhir+json"}
HORIZON_DAYS = 180  # the 6-month median (baseline_median_days), 2 x stable_days


@pytest.fixture(scope="module")
def horizon() -> ReadingHorizon:
    config = load_config({"ENV": "testing"})
    knowledge, _ = load_site(config.site_dir)
    return ReadingHorizon(READING_NEEDS, knowledge, NOW)


def monthly_cbcs(years: int = 5, codes: tuple[str, ...] = (WBC, ANC, ALC)) -> list[dict]:
    """A CBC (WBC, ANC, ALC) every 30 days for `years`, newest first."""
    return [
        observation(code, value, days_ago=30 * month + 2)
        for month in range(12 * years)
        for code, value in zip(codes, (5.1, 3.0, 1.4), strict=False)
    ]


def _time(resource: dict) -> str:
    return str(resource.get("effectiveDateTime", ""))


class PagedServer:
    """An EHR's Observation search at a fixed page size (whatever `_count` asks, as servers
    cap it), sorted newest first unless `unsorted`, with `next` links; `code` narrows it."""

    def __init__(self, results: list[dict], page_size: int, unsorted: bool = False) -> None:
        self.results, self.page_size, self.unsorted = results, page_size, unsorted
        self.calls: list[dict[str, list[str]]] = []

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        query = parse_qs(urlsplit(request.url).query)
        self.calls.append(query)
        matches = self.results
        if "code" in query:
            wanted = {token.rpartition("|")[2] for token in query["code"][0].split(",")}
            matches = [r for r in matches if r["code"]["coding"][0]["code"] in wanted]
        if not self.unsorted:
            matches = sorted(matches, key=_time, reverse=True)
        size = min(self.page_size, int(query.get("_count", ["50"])[0]))
        offset = int(query.get("_offset", ["0"])[0])
        next_url = None
        if offset + size < len(matches):
            following = {k: v[0] for k, v in query.items()} | {"_offset": offset + size}
            next_url = f"{FHIR_SERVER}/Observation?{urlencode(following)}"
        page = searchset(*matches[offset : offset + size], next_url=next_url)
        return 200, FHIR_HEADERS, json.dumps(page)

    def first_page(self) -> dict:
        """The first page, as an EHR would put it in the prefetch."""
        _, _, body = self(_Request(f"{FHIR_SERVER}/Observation?_count=500"))
        self.calls.pop()
        return dict(json.loads(body))


class _Request:
    def __init__(self, url: str) -> None:
        self.url = url


def serve(fhir: Any, server: Callable[..., Any]) -> None:
    fhir.add_callback("GET", f"{FHIR_SERVER}/Observation", callback=server)


def counts_of(gathered: Any) -> list[dict]:
    return list(gathered.resources["counts"])


def oldest(resources: list[dict]) -> Any:
    return min(as_datetime(_time(r)) for r in resources)  # type: ignore[type-var]


@pytest.mark.parametrize("page_size", [10, 50, 100])
@pytest.mark.parametrize("first_page", ["fetched", "prefetched"])
def test_five_years_of_monthly_cbcs_are_read_back_to_the_horizon(
    templates, config, fhir, horizon, page_size, first_page
):
    server = PagedServer(monthly_cbcs(), page_size)
    serve(fhir, server)
    prefetch = full_prefetch(templates)
    if first_page == "fetched":
        del prefetch["counts"]
    else:
        prefetch["counts"] = server.first_page()
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config, horizon=horizon)
    assert gathered.incomplete == {} and gathered.unavailable == {}
    held = counts_of(gathered)
    # Back past the 6-month horizon (which also gives the count before any cyclophosphamide
    # pulse inside it), and no further than the page that crossed it.
    assert oldest(held) < NOW - timedelta(days=HORIZON_DAYS)
    assert oldest(held) >= NOW - timedelta(days=HORIZON_DAYS) - timedelta(days=30 * page_size)
    assert len(held) < len(server.results)
    pages = len(server.calls) + (first_page == "prefetched")
    assert pages == -(-len(held) // page_size)  # every page read was needed


def test_the_old_five_page_limit_is_gone(templates, config, fhir, horizon):
    # 10 per page: the horizon (7 CBCs, 21 results) is on page 3 but a sparse differential
    # pushes it further; 5 pages used to be the end whatever they held.
    results = [observation(WBC, 5.0, days_ago=3 * n + 1) for n in range(80)]
    results += monthly_cbcs(years=2)
    server = PagedServer(results, page_size=10)
    serve(fhir, server)
    prefetch = full_prefetch(templates)
    del prefetch["counts"]
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config, horizon=horizon)
    assert len(server.calls) > 5
    assert gathered.incomplete == {}
    assert oldest(counts_of(gathered)) < NOW - timedelta(days=HORIZON_DAYS)


def test_pages_out_of_date_order_are_read_to_the_end(templates, config, fhir, horizon):
    results = monthly_cbcs(years=3)
    results.reverse()  # oldest first: the server ignored `_sort`
    server = PagedServer(results, page_size=50, unsorted=True)
    serve(fhir, server)
    prefetch = full_prefetch(templates)
    del prefetch["counts"]
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config, horizon=horizon)
    assert len(counts_of(gathered)) == len(results)
    assert gathered.incomplete == {}


def test_a_history_cut_short_before_the_horizon_says_from_when(templates, config, fhir, horizon):
    server = PagedServer(monthly_cbcs(), page_size=10)
    serve(fhir, server)
    first = server.first_page()
    # The second page fails: only the first 10 results (about 3 months) are held.
    fhir.replace("GET", f"{FHIR_SERVER}/Observation", status=500)
    prefetch = full_prefetch(templates) | {"counts": first}
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config, horizon=horizon)
    assert "HTTP 500" in gathered.incomplete["counts"]
    assert gathered.read_back_to["counts"] == oldest(first_resources(first))


def first_resources(bundle: dict) -> list[dict]:
    return [entry["resource"] for entry in bundle["entry"]]


def test_the_byte_budget_not_a_page_count_stops_reading(templates, config, fhir, horizon):
    server = PagedServer(monthly_cbcs(), page_size=10)
    serve(fhir, server)
    prefetch = full_prefetch(templates)
    del prefetch["counts"]
    config = replace(config, fhir_max_call_bytes=8000)  # about two pages of 10
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config, horizon=horizon)
    assert "larger than 8000 bytes" in gathered.incomplete["counts"]
    held = counts_of(gathered)
    assert gathered.read_back_to["counts"] == oldest(held) > NOW - timedelta(days=HORIZON_DAYS)


def test_prefetch_covering_the_horizon_needs_no_fhir_server(templates, config, horizon):
    # Page 1 of 50 reaches back 17 months: the `next` link cannot be read (no fhirServer) and
    # need not be. Before, this patient got "Some patient data could not be retrieved".
    server = PagedServer(monthly_cbcs(), page_size=50)
    prefetch = full_prefetch(templates) | {"counts": server.first_page()}
    gathered = gather(templates, CONTEXT, prefetch, None, None, config, horizon=horizon)
    assert gathered.incomplete == {} and gathered.read_since == {}


def test_prefetch_short_of_the_horizon_without_fhir_server_says_so(templates, config, horizon):
    server = PagedServer(monthly_cbcs(), page_size=10)
    first = server.first_page()
    prefetch = full_prefetch(templates) | {"counts": first}
    gathered = gather(templates, CONTEXT, prefetch, None, None, config, horizon=horizon)
    assert "counts" in gathered.incomplete
    assert gathered.read_back_to["counts"] == oldest(first_resources(first))


def test_the_last_value_of_any_age_is_searched_for_once(templates, config, fhir, horizon):
    # Monthly WBC and ANC for 5 years; one ALC, 3 years ago: the horizon holds no ALC, so one
    # more search asks for the newest ALC (CBC_STALE and ORDER_NO_RECENT_CBC quote it).
    results = monthly_cbcs(codes=(WBC, ANC)) + [observation(ALC, 0.4, days_ago=1100)]
    server = PagedServer(results, page_size=50)
    serve(fhir, server)
    prefetch = full_prefetch(templates)
    del prefetch["counts"]
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config, horizon=horizon)
    latest_searches = [q for q in server.calls if q.get("_count") == ["1"]]
    assert len(latest_searches) == 1
    assert latest_searches[0]["code"][0].split(",") == [
        "http://loinc.org|732-8",
        "http://loinc.org|731-0",
        "http://loinc.org|26474-7",
        "http://loinc.org|30364-4",
    ]
    assert [r["code"]["coding"][0]["code"] for r in counts_of(gathered)].count(ALC) == 1
    assert gathered.incomplete == {} and gathered.read_since == {}


def test_without_a_server_a_missing_last_value_is_a_read_since_date(templates, config, horizon):
    results = monthly_cbcs(codes=(WBC, ANC)) + [observation(ALC, 0.4, days_ago=1100)]
    first = PagedServer(results, page_size=50).first_page()
    prefetch = full_prefetch(templates) | {"counts": first}
    gathered = gather(templates, CONTEXT, prefetch, None, None, config, horizon=horizon)
    assert gathered.incomplete == {}  # the horizon is covered: no data card
    assert gathered.read_since["counts"] == oldest(first_resources(first))


def test_temperatures_are_read_over_24_hours_only(templates, config, fhir, horizon):
    temperatures = [observation(TEMPERATURE, 37.0, "Cel", hours_ago=4 * n + 1) for n in range(200)]
    server = PagedServer(temperatures, page_size=10)
    fhir.add_callback("GET", f"{FHIR_SERVER}/Observation", callback=server)
    prefetch = full_prefetch(templates)
    del prefetch["temperatures"]
    gathered = gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, config, horizon=horizon)
    assert len(server.calls) == 1  # 10 readings every 4 h reach back 37 h
    assert gathered.incomplete == {}


@pytest.mark.parametrize("page_size", [10, 50, 100])
def test_the_paged_fixture_fetched_at_any_page_size_gives_no_card(client, fhir, page_size):
    # fixtures: v4-five-years-monthly-cbcs-paged-at-50, its counts read from the EHR's server
    # instead of the prefetch, at 10, 50 or 100 per page.
    [paged] = [s for s in SCENARIOS if s["name"] == "v4-five-years-monthly-cbcs-paged-at-50"]
    body = request_of(paged)
    server = PagedServer(first_resources(body["prefetch"].pop("counts")), page_size)
    serve(fhir, server)
    body["fhirServer"] = FHIR_SERVER
    body["fhirAuthorization"] = fhir_authorization(TOKEN)
    status, answer = call(client, body)
    assert status == 200 and answer["cards"] == []
    # The count horizon is 12 months before the latest count (the lymphopenia-episode look-back
    # of contract v4, the longest the rules read): ~39 results, 4 pages of 10.
    assert len(server.calls) == {10: 4, 50: 1, 100: 1}[page_size]
