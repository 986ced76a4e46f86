"""Benchmarks: `python -m benchmarks.run [--quick]`.

1. In-process: `evaluate` (with request parsing and response JSON) on synthetic patients of
   three sizes; p50/p95/p99, the JSON floor (json.loads + json.dumps of the same request) and
   the ratio.
   "Cold" repeats the typical and heavy calls with the FHIR validation cache emptied first:
   a patient the worker has not seen yet.
2. HTTP: a real `cds-service serve --production` on 127.0.0.1 (free port, SQLite in a temp
   dir, development profile: no JWT), loaded by N concurrent clients for S seconds
   with the typical request; throughput, p50/p95/p99, errors and worker RSS. Run twice: as
   deployed, and cold (CDS_VALIDATION_CACHE_SIZE=0: every call validates every resource).
Writes benchmarks/results/latest.md and latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from benchmarks.load import over_http, summary
from tests.support.synthetic import SIZES, patient_view_request, resource_count

RESULTS = Path(__file__).parent / "results"
TARGETS = {
    "typical_p95_ms": 25.0,
    "typical_ratio": 5.0,
    "heavy_p95_ms": 150.0,
    "http_rps": 100.0,
    "http_p99_ms": 200.0,
    "rss_mb": 150.0,
}


def in_process(size: str, iterations: int) -> dict[str, Any]:
    """One call as the API does it, minus HTTP: parse, evaluate, serialise the cards."""
    from cds_service.config import load_config
    from cds_service.engine import evaluate
    from cds_service.fhir.validation import clear_cache
    from cds_service.protocol.request import parse_request
    from cds_service.services import load_site

    config = load_config({"ENV": "development"})
    knowledge, services = load_site(config.site_dir)
    service = services["leukopenia-patient-view"]
    body = json.dumps(patient_view_request(size)).encode()

    def call() -> bytes:
        request = parse_request(orjson.loads(body), service.hook)
        result = evaluate(service, request, knowledge, config, datetime.now(UTC))
        return json.dumps({"cards": result.cards}).encode()

    def cold() -> bytes:
        clear_cache()
        return call()

    def floor() -> bytes:
        return json.dumps(json.loads(body)).encode()

    results = {}
    for name, function in (("evaluate", call), ("cold", cold), ("json_floor", floor)):
        for _ in range(3):
            function()  # warm caches (UCUM, value sets), as a running server has them
        samples = []
        for _ in range(iterations):
            started = time.perf_counter()
            function()
            samples.append(time.perf_counter() - started)
        results[name] = summary(samples)
    results["resources"] = resource_count(json.loads(body))
    results["request_bytes"] = len(body)
    results["ratio_p95"] = round(results["evaluate"]["p95_ms"] / results["json_floor"]["p95_ms"], 2)
    return results


def reference_loop_ms() -> float:
    """The machine's speed: a fixed pure-Python loop, best of three (lower is faster). Cloud
    machines of one kind differ, and one machine varies during a run, by 2-3x: the report
    shows this at the start and the end so that figures from two runs can be compared."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(1_000_000):
            total += number
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def _verdict(value: float, target: float, higher_is_better: bool = False) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"


def report(results: dict[str, Any]) -> str:
    typical, heavy = results["in_process"]["typical"], results["in_process"]["heavy"]
    rows = [
        ("typical in-process p95 (ms)", typical["evaluate"]["p95_ms"], "<= 25", 25.0, False),
        ("typical p95 / JSON floor p95", typical["ratio_p95"], "<= 5x", 5.0, False),
        ("heavy in-process p95 (ms)", heavy["evaluate"]["p95_ms"], "<= 150", 150.0, False),
        ("typical in-process p95, cold (ms)", typical["cold"]["p95_ms"], "<= 25", 25.0, False),
        ("heavy in-process p95, cold (ms)", heavy["cold"]["p95_ms"], "<= 150", 150.0, False),
    ]
    from benchmarks.fetch import fetch_rows, fetch_sections

    runs = [(key, results[key]) for key in ("http", "http_cold") if key in results]
    for key, run in runs:
        label = "HTTP" if key == "http" else "HTTP cold"
        rows += [
            (f"{label} throughput (req/s)", run["rps"], ">= 100", 100.0, True),
            (f"{label} p99 (ms)", run["p99_ms"], "<= 200", 200.0, False),
            (f"{label} errors", run["errors"], "0", 0, False),
            (f"{label} max worker RSS (MB)", run["max_worker_rss_mb"], "<= 150", 150.0, False),
        ]
    rows += fetch_rows(results)
    lines = [
        "# Benchmark results",
        "",
        f"Run {results['when']} on {results['machine']} ({results['cpus']} CPUs), "
        f"Python {results['python']}. Command: `{results['command']}`.",
        "",
        "| Figure | Measured | Target | |",
        "|---|---|---|---|",
    ]
    for name, value, shown, target, higher in rows:
        lines.append(f"| {name} | {value} | {shown} | {_verdict(value, target, higher)} |")
    lines += [
        "",
        "## In-process (parse + evaluate + response JSON)",
        "",
        "| Size | Resources | Request bytes | p50 ms | p95 ms | p99 ms | cold p95 ms "
        "| JSON floor p95 ms | Ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, data in results["in_process"].items():
        e, c, f = data["evaluate"], data["cold"], data["json_floor"]
        lines.append(
            f"| {size} | {data['resources']} | {data['request_bytes']} | {e['p50_ms']} | "
            f"{e['p95_ms']} | {e['p99_ms']} | {c['p95_ms']} | {f['p95_ms']} | "
            f"{data['ratio_p95']} |"
        )
    lines += [
        "",
        "Cold: the FHIR validation cache emptied before each call (a patient the worker has "
        "not seen). Warm: the same request again, as when a chart is reopened or an order "
        "hook follows patient-view.",
    ]
    for key, run in runs:
        lines += [
            "",
            f"## HTTP (`cds-service serve --production`, typical request"
            f"{', validation cache off' if key == 'http_cold' else ''})",
            "",
            f"{run['clients']} concurrent clients for {run['seconds']} s against "
            f"{run['workers']} gunicorn {run.get('worker_class', 'default')} workers on "
            "127.0.0.1 (each answer closes its connection, so every call connects anew): "
            f"{run['requests']} requests, "
            f"{run['rps']} req/s, p50 {run['p50_ms']} ms, p95 {run['p95_ms']} ms, "
            f"p99 {run['p99_ms']} ms, {run['errors']} errors, max worker RSS "
            f"{run['max_worker_rss_mb']} MB, service CPU "
            f"{run.get('cpu_per_call', {}).get('workers', '-')} ms per call. Load generator: "
            f"{run.get('generator', 'python')} (wrk when installed, else Python threads), on "
            "the same 2 cores.",
        ]
    lines += fetch_sections(results)
    if results.get("load_average"):
        lines += [
            "",
            f"Machine load average (1, 5, 15 min) at the start: {results['load_average']}.",
        ]
    if speed := results.get("reference_loop_ms"):
        lines += [
            "",
            f"Machine speed: a fixed pure-Python loop (`reference_loop_ms`) took "
            f"{speed['start']} ms at the start and {speed['end']} ms at the end (lower is "
            "faster). Compare runs on different machines by it.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations, 5 s of HTTP load")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--no-http", action="store_true", help="in-process figures only")
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="HTTP load generator: wrk when installed (auto), else Python threads",
    )
    parser.add_argument("--no-fetch", action="store_true", help="skip the fetch-mode runs")
    parser.add_argument(
        "--compare-workers",
        action="store_true",
        help="only the HTTP runs, once per gunicorn worker model: results/workers.md",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from benchmarks import fetch

    if args.compare_workers:
        return fetch.compare_workers(args.clients, args.seconds, args.generator, args.output)
    iterations = {"small": 200, "typical": 200, "heavy": 40}
    if args.quick:
        iterations = {"small": 20, "typical": 20, "heavy": 5}
        args.seconds = min(args.seconds, 5.0)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": "python -m benchmarks.run" + (" --quick" if args.quick else ""),
        "targets": TARGETS,
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "reference_loop_ms": {"start": reference_loop_ms()},
        "in_process": {size: in_process(size, iterations[size]) for size in SIZES},
    }
    if not args.no_http:
        results["http"] = over_http(args.clients, args.seconds, args.generator)
        results["http_cold"] = over_http(args.clients, args.seconds, args.generator, cache=False)
        if not args.no_fetch:
            results["fetch"] = fetch.fetch_runs(args.clients, args.seconds, args.generator)
            results["fetch_scenarios"] = fetch.scenario_check(fetch.SCENARIO_DELAY)
    results["reference_loop_ms"]["end"] = reference_loop_ms()
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results)
    (args.output / "latest.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
