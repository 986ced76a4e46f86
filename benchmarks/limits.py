"""Bounded work per call: `python -m benchmarks.limits [--calls 40] [--megabytes 7.6]`.

Against a real `cds-service serve --production` (gevent workers, the production worker count),
this measures what large and hostile inputs cost a worker:
1. `--calls` concurrent patient-view calls whose prefetch is a synthetic patient of about
   `--megabytes` MB (a different patient in each, so every resource is validated; the
   heavy patient scaled: years of weekly CBCs), sampling every worker's RSS
   every 20 ms: the peak per worker during the calls and the RSS 2 s after the last answer;
2. hostile bodies (a 1,000,000-element array in a resource, deep nesting, a resource of
   100,000 elements), one at a time: status and seconds; and a normal call right after.
Numbers are printed as JSON (no assertions: timings depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from benchmarks.fetch import post
from benchmarks.load import SERVICE_PATH, cpu_seconds, rss_mb, running_server
from tests.support.network import worker_pids
from tests.support.synthetic import SIZES, Size, patient_view_request

# The heavy synthetic patient: 3055 resources, 2.36 MB.
HEAVY_MEGABYTES = 2.36


def large_request(megabytes: float) -> bytes:
    """A patient-view request of about `megabytes` MB: the heavy patient, scaled."""
    heavy = SIZES["heavy"]
    factor = megabytes / HEAVY_MEGABYTES
    SIZES["large"] = Size(
        "large",
        heavy.cbc_interval_days,
        round(heavy.cbc_count * factor),
        round(heavy.temperatures * factor),
        round(heavy.weights * factor),
        round(heavy.other_conditions * factor),
        round(heavy.old_medication_orders * factor),
    )
    try:
        return orjson.dumps(patient_view_request("large", datetime.now(UTC)))
    finally:
        del SIZES["large"]


def dense_request(megabytes: float) -> bytes:
    """A patient-view request of about `megabytes` MB of small, recent WBC results: the most
    values and resources per byte a plausible chart has (each is validated and read)."""
    per_result = len(small_results_request(1001)) - len(small_results_request(1))
    return small_results_request(int(megabytes * 1e6 * 1000 / per_result))


def small_results_request(
    results: int, minutes_apart: float = 0, value: float = 5.1, percents: int = 0
) -> bytes:
    """The small synthetic patient with `results` small, distinct WBC results (~290 bytes
    each; the newest now, then `minutes_apart` apart), and `percents` neutrophil % results of
    now, in place of its counts."""
    body = patient_view_request("small", datetime.now(UTC))
    now = datetime.now(UTC)

    def result(n: int, code: str, number: float, unit: str, minutes: float) -> dict[str, Any]:
        when = (now - timedelta(minutes=minutes)).isoformat()
        return {
            "resource": {
                "resourceType": "Observation",
                "id": f"{code}-{n}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": "Patient/bench-large"},
                "effectiveDateTime": when,
                "valueQuantity": {"value": number, "unit": unit},
            }
        }

    body["prefetch"]["counts"]["entry"] = [
        result(n, "6690-2", value, "10*3/uL", n * minutes_apart) for n in range(results)
    ] + [result(n, "770-8", 50.0, "%", 0) for n in range(percents)]
    return orjson.dumps(body).replace(b"bench-small", b"bench-large")


def hostile_bodies() -> dict[str, bytes]:
    base = patient_view_request("small", datetime.now(UTC))

    def with_array(field: str, items: list[Any]) -> bytes:
        body = json.loads(json.dumps(base))
        body["prefetch"]["counts"]["entry"][0]["resource"][field] = items
        return orjson.dumps(body)

    nested = json.loads(json.dumps(base))
    nested["context"]["extra"] = "DEEP"
    deep = b"[" * 100_000 + b"1" + b"]" * 100_000
    forty_five_large = patient_view_request("typical", datetime.now(UTC))
    entries = forty_five_large["prefetch"]["counts"]["entry"]
    for n, entry in enumerate(entries[:45]):
        entry["resource"]["note"] = [{"text": f"{n}"}] * 4_975  # ~9,990 values in all
    assert len(entries) >= 45
    return {
        "array of 1,000,000 numbers in an Observation": with_array("interpretation", [0] * 10**6),
        "array of 1,000,000 objects in an Observation": with_array("note", [{}] * 10**6),
        "Observation of 100,000 elements": with_array("interpretation", [{"text": "x"}] * 50_000),
        "nesting 100,000 deep": orjson.dumps(nested).replace(b'"DEEP"', deep),
        # The worst accepted inputs: each costs its worker at most the deadline plus 1 s.
        "9,950 small recent results (the resource limit)": small_results_request(9_950),
        "45 Observations of ~9,990 values (the per-resource limit)": orjson.dumps(forty_five_large),
        "9,900 low WBCs 9 minutes apart (many draws)": small_results_request(9_900, 9, 1.5),
        "4,950 WBCs and 4,950 % of one draw": small_results_request(4_950, percents=4_950),
        "over 10,000 resources": small_results_request(10_000),
    }


def concurrent_large_calls(port: int, server_pid: int, body: bytes, calls: int) -> dict[str, Any]:
    workers = worker_pids(server_pid)
    before = {pid: _rss_if_alive(pid) for pid in workers}
    peak = dict(before)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in workers:
                peak[pid] = max(peak[pid], _rss_if_alive(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    # Each call names its own patient, so every resource is new to the validation cache.
    bodies = [body.replace(b"bench-large", f"bench-large-{n}".encode()) for n in range(calls)]
    with ThreadPoolExecutor(calls) as pool:
        answers = [answer[:2] for answer in pool.map(lambda b: _timed(port, b), bodies)]
    elapsed = time.monotonic() - started
    time.sleep(2)
    stop.set()
    sampler.join()
    after = {pid: _rss_if_alive(pid) for pid in workers}
    statuses: dict[str, int] = {}
    for status, _ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "calls": calls,
        "request_mb": round(len(body) / 1e6, 2),
        "statuses": statuses,
        "seconds_all": round(elapsed, 2),
        "slowest_call_s": round(max(seconds for _, seconds in answers), 2),
        "rss_before_mb": sorted(round(v) for v in before.values()),
        "rss_peak_mb": sorted(round(v) for v in peak.values()),
        "rss_after_mb": sorted(round(after.get(pid, 0.0)) for pid in workers),
        "workers_killed": len(set(workers) - set(worker_pids(server_pid))),
    }


def _rss_if_alive(pid: int) -> float:
    """The worker's RSS, or 0 when gunicorn has killed it (its timeout) and it is gone."""
    try:
        return rss_mb(pid)
    except OSError:
        return 0.0


def _timed(port: int, body: bytes) -> tuple[int, float, str]:
    """(status, seconds, the start of the answer); status 0 when the connection failed."""
    started = time.monotonic()
    try:
        status, answer = post(port, SERVICE_PATH, body)
    except OSError as error:
        status, answer = 0, type(error).__name__.encode()
    return status, time.monotonic() - started, answer[:160].decode(errors="replace")


def hostile_calls(port: int, server_pid: int, normal: bytes) -> dict[str, Any]:
    """Each body alone on the idle server: its status, seconds and workers' CPU seconds."""
    results = {}
    for name, body in hostile_bodies().items():
        workers = worker_pids(server_pid)
        cpu = sum(cpu_seconds(pid) for pid in workers)
        status, seconds, answer = _timed(port, body)
        results[name] = {
            "bytes": len(body),
            "status": status,
            "seconds": round(seconds, 2),
            "cpu_seconds": round(sum(cpu_seconds(pid) for pid in workers) - cpu, 2),
            "answer": answer,
        }
    status, seconds, _ = _timed(port, normal)
    results["normal call after them"] = {"status": status, "seconds": round(seconds, 2)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--megabytes", type=float, default=7.6)
    parser.add_argument("--dense", action="store_true", help="small recent results only")
    parser.add_argument("--skip-hostile", action="store_true")
    args = parser.parse_args(argv)
    body = (dense_request if args.dense else large_request)(args.megabytes)
    normal = orjson.dumps(patient_view_request("typical", datetime.now(UTC)))
    results: dict[str, Any] = {}
    with running_server() as (port, pid, _):
        time.sleep(1)
        results["concurrent"] = concurrent_large_calls(port, pid, body, args.calls)
        print(json.dumps(results["concurrent"]), flush=True)
        if not args.skip_hostile:
            results["hostile"] = hostile_calls(port, pid, normal)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
