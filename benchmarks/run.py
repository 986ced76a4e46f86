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
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tests.support.network import free_port, worker_pids
from tests.support.synthetic import SIZES, patient_view_request, resource_count

RESULTS = Path(__file__).parent / "results"
SERVICE_PATH = "/cds-services/leukopenia-patient-view"
TARGETS = {
    "typical_p95_ms": 25.0,
    "typical_ratio": 5.0,
    "heavy_p95_ms": 150.0,
    "http_rps": 100.0,
    "http_p99_ms": 200.0,
    "rss_mb": 150.0,
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 50) * 1000, 2),
        "p95_ms": round(percentile(samples, 95) * 1000, 2),
        "p99_ms": round(percentile(samples, 99) * 1000, 2),
        "mean_ms": round(statistics.fmean(samples) * 1000, 2),
        "n": len(samples),
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
        results[name] = _summary(samples)
    results["resources"] = resource_count(json.loads(body))
    results["request_bytes"] = len(body)
    results["ratio_p95"] = round(results["evaluate"]["p95_ms"] / results["json_floor"]["p95_ms"], 2)
    return results


def _wait_ready(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become ready")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int, thread_id: int | None = None) -> float:
    """CPU time (user + system) a process, or one of its threads, has used so far."""
    path = f"/proc/{pid}/task/{thread_id}/stat" if thread_id else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CpuMeter = Callable[[], float]


def _cpu_per_call(
    meters: Mapping[str, CpuMeter], before: Mapping[str, float], calls: int
) -> dict[str, float]:
    """Milliseconds of CPU per answered call, per meter, since `before`."""
    return {
        name: round(1000 * (meter() - before[name]) / max(calls, 1), 2)
        for name, meter in meters.items()
    }


def _client(
    port: int,
    body: bytes,
    stop_at: float,
    out: list[float],
    errors: list[str],
    path: str = SERVICE_PATH,
) -> None:
    headers = {"Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors.append(f"HTTP {response.status}")
        except (OSError, http.client.HTTPException) as error:
            errors.append(type(error).__name__)
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            continue
        out.append(time.perf_counter() - started)
    connection.close()


# wrk (C, Debian package `wrk`) posts the same body with far less CPU than Python threads,
# which share the server's 2 cores; its `done` hook prints one JSON line we parse.
# With CDS_BENCH_EXPECT set, each answer's card signature (see card_signature) is compared
# with it and the differing ones are counted.
_WRK_SCRIPT = """
local f = assert(io.open(os.getenv("CDS_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local threads = {}
setup = function(thread) table.insert(threads, thread) end
local expect = os.getenv("CDS_BENCH_EXPECT")
different = 0
if expect then
  response = function(status, headers, body)
    if status == 200 then
      local parts = {}
      for value in body:gmatch('"indicator":%s*"(.-)"') do parts[#parts + 1] = value end
      for value in body:gmatch('"summary":%s*"(.-)"') do parts[#parts + 1] = value end
      if table.concat(parts, "|") ~= expect then different = different + 1 end
    end
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  local differing = 0
  for _, thread in ipairs(threads) do differing = differing + (thread:get("different") or 0) end
  io.write(string.format(
    '\\nWRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,'
    .. '"mean_us":%.1f,"errors":%d,"non_2xx_3xx":%d,"different":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.mean, e.connect + e.read + e.write + e.timeout,
    e.status, differing))
end
"""


def card_signature(answer: bytes) -> str:
    """The cards' indicators and summaries, in order, as the wrk script extracts them."""
    text = answer.decode()
    indicators = re.findall(r'"indicator":\s*"(.*?)"', text)
    summaries = re.findall(r'"summary":\s*"(.*?)"', text)
    return "|".join(indicators + summaries)


def _wrk(
    port: int,
    body: bytes,
    clients: int,
    seconds: float,
    workdir: str,
    expect: str | None = None,
) -> dict[str, Any]:
    body_path, script_path = Path(workdir, "body.json"), Path(workdir, "post.lua")
    body_path.write_bytes(body)
    script_path.write_text(_WRK_SCRIPT)
    url = f"http://127.0.0.1:{port}{SERVICE_PATH}"
    # --timeout 10s: a slow answer is measured as latency, not counted as a socket error
    # (wrk's default gives up after 2 s, the FHIR budget itself).
    command = [
        "wrk",
        "-t2",
        f"-c{clients}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script_path),
    ]
    env = {**os.environ, "CDS_BENCH_BODY": str(body_path)}
    if expect is not None:
        env["CDS_BENCH_EXPECT"] = expect
    output = subprocess.run(
        [*command, url],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    line = next(x for x in output.splitlines() if x.startswith("WRKJSON "))
    data = json.loads(line.removeprefix("WRKJSON "))
    errors = data["errors"] + data["non_2xx_3xx"]
    return {
        "requests": data["requests"],
        "seconds": data["duration_us"] / 1e6,
        "errors": errors,
        "error_kinds": ["socket"] * bool(data["errors"])
        + ["HTTP status"] * bool(data["non_2xx_3xx"]),
        "p50_ms": round(data["p50_us"] / 1000, 2),
        "p95_ms": round(data["p95_us"] / 1000, 2),
        "p99_ms": round(data["p99_us"] / 1000, 2),
        "mean_ms": round(data["mean_us"] / 1000, 2),
        "n": data["requests"],
        "different": data["different"] if expect is not None else None,
    }


@contextmanager
def running_server(extra_env: dict[str, str] | None = None) -> Iterator[tuple[int, int, str]]:
    """`cds-service serve --production` on a free port (development profile, SQLite in a temp
    dir, access log off); yields (port, server pid, work dir)."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="cds-bench-")
    env = {
        **os.environ,
        "CDS_ENV": "development",
        "CDS_DATABASE_URL": f"sqlite:///{workdir}/cds.sqlite3",
        "PROMETHEUS_MULTIPROC_DIR": f"{workdir}/metrics",
        "GUNICORN_ACCESSLOG": "",  # access lines cost time at this rate; off for the run
        **(extra_env or {}),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "cds_service.cli", "serve", "--production", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(f"{workdir}/server.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    try:
        _wait_ready(port, 60)
        yield port, server.pid, workdir
    finally:
        server.terminate()
        server.wait(30)


def load_server(
    port: int,
    pid: int,
    workdir: str,
    body: bytes,
    clients: int,
    seconds: float,
    generator: str = "auto",
    expect: str | None = None,
    cpu_meters: Mapping[str, CpuMeter] | None = None,
) -> dict[str, Any]:
    """N clients posting `body` for S seconds; with `expect` (wrk only), answers whose cards'
    signature (card_signature) differs from it are counted as `different`. `cpu_per_call`:
    milliseconds of CPU per answered call of the service's workers, and of `cpu_meters`."""
    use_wrk = generator == "wrk" or (generator == "auto" and shutil.which("wrk") is not None)
    workers = worker_pids(pid)
    meters = {"workers": lambda: sum(cpu_seconds(worker) for worker in workers)}
    meters |= cpu_meters or {}
    if use_wrk:
        _wrk(port, body, 2, 2.0, workdir)  # warm-up, as the Python generator does
        before = {name: meter() for name, meter in meters.items()}
        rss_samples: list[float] = []
        sampling = threading.Event()

        def sample_rss() -> None:
            while not sampling.wait(1):
                rss_samples.extend(_rss_mb(p) for p in worker_pids(pid))

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        try:
            result = _wrk(port, body, clients, seconds, workdir, expect)
        finally:
            sampling.set()
            sampler.join()
        elapsed = result.pop("seconds")
        return {
            "generator": "wrk",
            "clients": clients,
            "seconds": round(elapsed, 1),
            **result,
            "rps": round(result["requests"] / elapsed, 1),
            "workers": len(workers),
            "max_worker_rss_mb": round(max(rss_samples, default=0.0), 1),
            "cpu_per_call": _cpu_per_call(meters, before, result["requests"]),
        }
    warm: list[float] = []
    _client(port, body, time.monotonic() + 2, warm, [])
    before = {name: meter() for name, meter in meters.items()}
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop_at = time.monotonic() + seconds
    threads = [
        threading.Thread(target=_client, args=(port, body, stop_at, latencies[i], errors))
        for i in range(clients)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    rss: list[float] = []
    while time.monotonic() < stop_at:
        rss += [_rss_mb(p) for p in worker_pids(pid)]
        time.sleep(1)
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    samples = [value for per_client in latencies for value in per_client]
    return {
        "generator": "python",
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(samples),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "rps": round(len(samples) / elapsed, 1),
        **_summary(samples),
        "workers": len(workers),
        "max_worker_rss_mb": round(max(rss, default=0.0), 1),
        "cpu_per_call": _cpu_per_call(meters, before, len(samples)),
    }


def over_http(
    clients: int,
    seconds: float,
    generator: str = "auto",
    cache: bool = True,
    worker_class: str | None = None,
) -> dict[str, Any]:
    env = {"CDS_VALIDATION_CACHE_SIZE": "0"} if not cache else {}
    if worker_class:
        env |= worker_env(worker_class)
    with running_server(env) as (port, pid, workdir):
        body = json.dumps(patient_view_request("typical")).encode()
        result = load_server(port, pid, workdir, body, clients, seconds, generator)
    return {**result, "worker_class": worker_class or "default"}


def worker_env(worker_class: str) -> dict[str, str]:
    """gunicorn settings for a worker model: gthread with 8 threads per worker."""
    env = {"GUNICORN_WORKER_CLASS": worker_class}
    if worker_class == "gthread":
        env["GUNICORN_THREADS"] = "8"
    return env


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
