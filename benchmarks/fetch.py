"""Fetch mode: the service reads the patient's data from a loopback FHIR server that answers
every call after a set delay, instead of getting it in the prefetch.

- `fetch_load`: the typical patient, no prefetch, one client (Python, sequential calls) and N
  clients (wrk); every answer under load is compared with the unloaded answer.
- `scenario_check`: every fixture scenario once with its prefetch and once without it (its
  prefetched resources served by the FHIR server): the cards must be the same.

The FHIR server is tests/support/fhir_stub.py in this process (one aiohttp event loop), with its
answers computed once per query, so it costs the 2 shared cores little more than the HTTP
exchange; the report gives its CPU per hook call beside the service's.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.load import (
    card_signature,
    cpu_seconds,
    load_server,
    over_http,
    posting_client,
    running_server,
    summary,
    worker_env,
)
from cds_service.fhir.timeshift import replay_now
from tests.support.builders import fhir_authorization
from tests.support.fhir_stub import FhirStub, served_resources
from tests.support.synthetic import patient_view_request
from tests.support.tls import TestCertificateAuthority

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOKEN = "benchmark-token"
# The FHIR answer cache off: every call of the run must really read the FHIR server (with it
# on, the same patient again would be answered from memory).
NO_CACHE = {"CDS_FHIR_CACHE_SECONDS": "0"}


def without_prefetch(request: dict[str, Any], base_url: str) -> dict[str, Any]:
    body = copy.deepcopy(request)
    body.pop("prefetch", None)
    body["fhirServer"] = base_url
    body["fhirAuthorization"] = fhir_authorization(TOKEN)
    return body


def post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def one_client(port: int, path: str, body: bytes, seconds: float) -> dict[str, Any]:
    samples: list[float] = []
    errors: list[str] = []
    posting_client(port, body, time.monotonic() + seconds, samples, errors, path)
    return {"clients": 1, **summary(samples), "errors": len(errors)}


def fetch_load(
    delay: float,
    clients: int,
    seconds: float,
    worker_class: str | None = None,
    generator: str = "auto",
    tls: bool = False,
) -> dict[str, Any]:
    """The typical patient in fetch mode, FHIR calls answered after `delay` seconds; with
    `tls`, over HTTPS (a test CA trusted through REQUESTS_CA_BUNDLE, as a site trusts its own)."""
    request = patient_view_request("typical")
    path = "/cds-services/leukopenia-patient-view"
    env = NO_CACHE | (worker_env(worker_class) if worker_class else {})
    context = None
    if tls:
        authority = TestCertificateAuthority(Path(tempfile.mkdtemp(prefix="cds-bench-tls-")))
        context = authority.server_context()
        env["REQUESTS_CA_BUNDLE"] = str(authority.ca_file)
    stub = FhirStub(
        served_resources(request), token=TOKEN, delay_seconds=delay, ssl_context=context
    )
    stub.cache_answers = True
    with stub, running_server(env) as (port, pid, workdir):
        prefetched = post(port, path, json.dumps(request).encode())
        body = json.dumps(without_prefetch(request, stub.base_url)).encode()
        status, unloaded = post(port, path, body)
        expected = card_signature(unloaded)
        result: dict[str, Any] = {
            "delay_ms": round(delay * 1000),
            "tls": tls,
            "worker_class": worker_class or "default",
            "same_as_prefetch": status == 200 and expected == card_signature(prefetched[1]),
            "fhir_calls_per_hook_call": len(stub.calls),
            "one_client": one_client(port, path, body, min(seconds, 10.0)),
        }
        fhir_server_cpu = partial(cpu_seconds, os.getpid(), stub.thread_id)
        result["many_clients"] = load_server(
            port,
            pid,
            workdir,
            body,
            clients,
            seconds,
            generator,
            expect=expected,
            cpu_meters={"fhir_server": fhir_server_cpu},
        )
        result["fhir_calls"] = len(stub.calls)
        result["fhir_connections"] = len(stub.connections)
    return result


def _fixture_requests() -> list[tuple[str, str, dict[str, Any]]]:
    scenarios = json.loads((FIXTURES / "scenarios.json").read_text())
    requests = []
    for scenario in scenarios:
        request = replay_now(json.loads((FIXTURES / scenario["file"]).read_text()))
        requests.append((scenario["name"], request["hook"], request))
    return requests


def _cards(answer: bytes) -> list[tuple[str, str, str]]:
    cards = json.loads(answer).get("cards", [])
    return sorted((c["source"]["topic"]["code"], c["indicator"], c["summary"]) for c in cards)


def scenario_check(delay: float, worker_class: str | None = None) -> dict[str, Any]:
    """Every fixture scenario with its prefetch, then fetched from a FHIR server answering
    after `delay` seconds: the scenarios whose cards differ."""
    env = NO_CACHE | (worker_env(worker_class) if worker_class else {})
    different: list[str] = []
    skipped: list[str] = []
    durations: list[float] = []
    requests = _fixture_requests()
    with running_server(env) as (port, _pid, _workdir):
        for name, hook, request in requests:
            path = f"/cds-services/leukopenia-{hook}"
            if not request.get("prefetch"):
                skipped.append(name)
                continue
            status, prefetched = post(port, path, json.dumps(request).encode())
            with FhirStub(served_resources(request), token=TOKEN, delay_seconds=delay) as stub:
                started = time.perf_counter()
                fetched_status, fetched = post(
                    port, path, json.dumps(without_prefetch(request, stub.base_url)).encode()
                )
                durations.append(time.perf_counter() - started)
            if (status, fetched_status) != (200, 200) or _cards(prefetched) != _cards(fetched):
                different.append(name)
    return {
        "delay_ms": round(delay * 1000),
        "scenarios": len(requests) - len(skipped),
        "skipped_without_prefetch": skipped,
        "different": different,
        "duration": summary(durations) if durations else {},
    }


DELAYS = (0.05, 0.25)
TLS_DELAY = 0.05
SCENARIO_DELAY = 0.25
WORKER_CLASSES = ("sync", "gthread", "gevent")


def fetch_runs(clients: int, seconds: float, generator: str = "auto") -> list[dict[str, Any]]:
    """Fetch mode at each delay, with the deployed worker model; at 50 ms also over TLS, as
    every EHR's FHIR server is reached."""
    runs = [fetch_load(delay, clients, seconds, generator=generator) for delay in DELAYS]
    return [*runs, fetch_load(TLS_DELAY, clients, seconds, generator=generator, tls=True)]


def fetch_rows(results: dict[str, Any]) -> list[tuple[str, Any, str, float, bool]]:
    """Rows of the summary table: (figure, measured, target shown, target, higher is better)."""
    rows: list[tuple[str, Any, str, float, bool]] = []
    for run in results.get("fetch", []):
        if run.get("tls"):
            rows += _tls_rows(run, results.get("http"))
            continue
        if run["delay_ms"] != 50:
            continue
        one, many = run["one_client"], run["many_clients"]
        label = f"fetch 50 ms, {many['clients']} clients"
        rows += [
            ("fetch 50 ms, 1 client p50 (ms)", one["p50_ms"], "<= 90", 90.0, False),
            (f"{label} (req/s)", many["rps"], ">= 100", 100.0, True),
            (f"{label} p99 (ms)", many["p99_ms"], "<= 300", 300.0, False),
            (f"{label} errors", many["errors"], "0", 0, False),
            (f"{label}, answers differing from unloaded", many["different"], "0", 0, False),
        ]
    if check := results.get("fetch_scenarios"):
        rows.append(
            (
                f"fetch {check['delay_ms']} ms, scenarios whose cards differ from prefetch",
                len(check["different"]),
                "0",
                0,
                False,
            )
        )
    return rows


def _tls_rows(
    run: dict[str, Any], prefetch: dict[str, Any] | None
) -> list[tuple[str, Any, str, float, bool]]:
    """Issue 22's targets for fetch mode over TLS: at least half the prefetch throughput of the
    same run, and a p99 under 3 times the p50."""
    many = run["many_clients"]
    label = f"fetch {run['delay_ms']} ms over TLS, {many['clients']} clients"
    rows: list[tuple[str, Any, str, float, bool]] = []
    if prefetch:
        half = round(prefetch["rps"] / 2, 1)
        rows.append((f"{label} (req/s)", many["rps"], f">= {half} (half prefetch)", half, True))
    ratio = round(many["p99_ms"] / many["p50_ms"], 2) if many.get("p50_ms") else float("inf")
    rows += [
        (f"{label} p99 / p50", ratio, "< 3", 3.0, False),
        (f"{label} errors", many["errors"], "0", 0, False),
        (f"{label}, answers differing from unloaded", many["different"], "0", 0, False),
    ]
    return rows


def _transport(run: dict[str, Any]) -> str:
    if not run.get("tls"):
        return "HTTP"
    return f"TLS: {run['fhir_connections']} handshakes / {run['fhir_calls']} calls"


def fetch_sections(results: dict[str, Any]) -> list[str]:
    if not results.get("fetch") and not results.get("fetch_scenarios"):
        return []
    lines = [
        "",
        "## Fetch mode (no prefetch: the data read from a loopback FHIR server)",
        "",
        "The typical patient, its prefetch removed; a FHIR server on 127.0.0.1 "
        "(tests/support/fhir_stub.py, in the benchmark process) answers every call after the "
        "delay. One client: sequential "
        "calls (Python). Many clients: wrk, every answer's cards compared with the unloaded "
        "answer's. CPU per call: of the service's workers, and of the FHIR server (a real "
        "one runs on its own machine; here it shares the 2 cores).",
        "",
        "Over TLS the FHIR server is HTTPS with a test CA (REQUESTS_CA_BUNDLE); its "
        "connections are counted: each is one TLS handshake, and the workers' pooled "
        "connections are reused across hook calls.",
        "",
        "| FHIR delay | transport | workers | FHIR calls per hook call | same cards as prefetch "
        "| 1 client p50 / p99 ms | clients | req/s | p50 / p99 ms | errors | answers differing "
        "| CPU ms per call: service / FHIR server |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results.get("fetch", []):
        one, many = run["one_client"], run["many_clients"]
        lines.append(
            f"| {run['delay_ms']} ms | {_transport(run)} | {many['workers']} {run['worker_class']} "
            f"| {run['fhir_calls_per_hook_call']} | {run['same_as_prefetch']} "
            f"| {one['p50_ms']} / {one['p99_ms']} | {many['clients']} | {many['rps']} "
            f"| {many['p50_ms']} / {many['p99_ms']} | {many['errors']} | {many['different']} "
            f"| {_cpu_cell(many)} |"
        )
    if check := results.get("fetch_scenarios"):
        duration = check["duration"]
        lines += [
            "",
            f"Every fixture scenario ({check['scenarios']}) once with its prefetch and once "
            f"fetched from a FHIR server answering after {check['delay_ms']} ms: "
            f"{len(check['different'])} gave different cards"
            + (f" ({', '.join(check['different'])})" if check["different"] else "")
            + f"; fetched calls p50 {duration.get('p50_ms')} ms, p99 {duration.get('p99_ms')} ms.",
        ]
    return lines


def _cpu_cell(run: dict[str, Any]) -> str:
    cpu = run.get("cpu_per_call") or {}
    return f"{cpu.get('workers', '-')} / {cpu.get('fhir_server', '-')}"


def compare_workers(clients: int, seconds: float, generator: str, output: Path) -> int:
    """The prefetch and fetch-mode HTTP runs once per gunicorn worker model, side by side."""

    runs = []
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for worker_class in WORKER_CLASSES:
        runs.append(
            {
                "worker_class": worker_class,
                "prefetch": over_http(clients, seconds, generator, worker_class=worker_class),
                "fetch": fetch_load(0.05, clients, seconds, worker_class, generator),
                "fetch_slow": fetch_load(0.25, clients, seconds, worker_class, generator),
            }
        )
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# Worker models side by side",
        "",
        f"Command: `python -m benchmarks.run --compare-workers` ({clients} clients, {seconds:g} s "
        "per run, 3 workers each; gthread with 8 threads per worker). Machine load average "
        f"before {load_before}, after {load_after} (2 cores shared with other work: compare "
        "the rows with each other, not with a quiet machine).",
        "",
        f"Each row: the prefetch run ({clients} clients), then fetch mode at 50 ms and 250 ms per "
        f"FHIR call (1 client, then {clients} clients: req/s, p50 / p99 ms, errors, answers "
        "differing from the unloaded one).",
        "",
        "| workers | prefetch req/s | prefetch p50 / p99 ms | fetch 50 ms: 1 client p50 "
        "| fetch 50 ms: many | fetch 250 ms: 1 client p50 | fetch 250 ms: many |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        pre = run["prefetch"]
        cells = [run["worker_class"], pre["rps"], f"{pre['p50_ms']} / {pre['p99_ms']}"]
        for key in ("fetch", "fetch_slow"):
            one, many = run[key]["one_client"], run[key]["many_clients"]
            cells += [
                one["p50_ms"],
                f"{many['rps']} req/s, {many['p50_ms']} / {many['p99_ms']} ms, "
                f"{many['errors']} errors, {many['different']} differing",
            ]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    output.mkdir(parents=True, exist_ok=True)
    (output / "workers.json").write_text(json.dumps(runs, indent=2) + "\n")
    text = "\n".join(lines) + "\n"
    (output / "workers.md").write_text(text)
    print(text)
    return 0
