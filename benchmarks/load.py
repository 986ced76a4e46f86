"""A production server under load, measured: `cds-service serve --production` on a free port,
N clients posting one body (Python threads or wrk), and the latency, throughput, worker RSS
and CPU per call that come of it. Shared by the benchmark sections (run.py, fetch.py,
limits.py)."""

from __future__ import annotations

import http.client
import json
import os
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
from pathlib import Path
from typing import Any

from tests.support.network import free_port, worker_pids
from tests.support.synthetic import patient_view_request

SERVICE_PATH = "/cds-services/leukopenia-patient-view"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 50) * 1000, 2),
        "p95_ms": round(percentile(samples, 95) * 1000, 2),
        "p99_ms": round(percentile(samples, 99) * 1000, 2),
        "mean_ms": round(statistics.fmean(samples) * 1000, 2),
        "n": len(samples),
    }


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


def rss_mb(pid: int) -> float:
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


def posting_client(
    port: int,
    body: bytes,
    stop_at: float,
    out: list[float],
    errors: list[str],
    path: str = SERVICE_PATH,
    expect: str | None = None,
    different: list[str] | None = None,
) -> None:
    """Posts `body` until `stop_at`: each answer's time into `out`, each failure into `errors`,
    and, given `expect` and a `different` list, the cards' signature (card_signature) of each
    answer that differs from `expect` into it."""
    headers = {"Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                errors.append(f"HTTP {response.status}")
            elif different is not None and (signature := card_signature(answer)) != expect:
                different.append(signature)
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
    """N clients posting `body` for S seconds; with `expect`, answers whose cards' signature
    (card_signature) differs from it are counted as `different`. `cpu_per_call`:
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
                rss_samples.extend(rss_mb(p) for p in worker_pids(pid))

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
    posting_client(port, body, time.monotonic() + 2, warm, [])
    before = {name: meter() for name, meter in meters.items()}
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    different: list[str] | None = [] if expect is not None else None
    stop_at = time.monotonic() + seconds
    threads = [
        threading.Thread(
            target=posting_client,
            args=(port, body, stop_at, latencies[i], errors, SERVICE_PATH, expect, different),
        )
        for i in range(clients)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    rss: list[float] = []
    while time.monotonic() < stop_at:
        rss += [rss_mb(p) for p in worker_pids(pid)]
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
        **summary(samples),
        "workers": len(workers),
        "max_worker_rss_mb": round(max(rss, default=0.0), 1),
        "cpu_per_call": _cpu_per_call(meters, before, len(samples)),
        "different": len(different) if different is not None else None,
    }


def worker_env(worker_class: str) -> dict[str, str]:
    """gunicorn settings for a worker model: gthread with 8 threads per worker."""
    env = {"GUNICORN_WORKER_CLASS": worker_class}
    if worker_class == "gthread":
        env["GUNICORN_THREADS"] = "8"
    return env


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
