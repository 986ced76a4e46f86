"""The benchmark generator and a tiny in-process run work (no timing is asserted)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from benchmarks.load import cpu_seconds
from benchmarks.run import in_process, reference_loop_ms, report
from cds_service.protocol.request import parse_request
from tests.support.synthetic import SIZES, patient_view_request, resource_count


def test_generated_patients_have_the_promised_sizes():
    sizes = {size: resource_count(patient_view_request(size)) for size in SIZES}
    assert sizes["small"] < 60
    assert 250 <= sizes["typical"] <= 350
    assert 2700 <= sizes["heavy"] <= 3300


def test_generated_requests_are_valid_cds_hooks_requests():
    request = parse_request(patient_view_request("typical"), "patient-view")
    assert request.patient_id == "bench-typical"


def _report(figures: dict[str, Any], **more: Any) -> str:
    """The report of an in-process-only run, with `more` results beside."""
    run = {"when": "now", "machine": "x", "cpus": 2, "python": "3.11", "command": "test"}
    return report({**run, "in_process": figures, **more})


def test_tiny_in_process_benchmark_reports_every_figure():
    figures = {size: in_process(size, 2) for size in ("typical", "heavy")}
    assert figures["typical"]["evaluate"]["n"] == 2
    assert figures["heavy"]["cold"]["n"] == 2
    text = _report(figures)
    assert "typical in-process p95" in text and "heavy in-process p95" in text
    assert "typical in-process p95, cold" in text and "heavy in-process p95, cold" in text


def test_the_report_shows_the_machine_speed_at_both_ends():
    figures = {size: in_process(size, 1) for size in ("typical", "heavy")}
    speed = {"start": reference_loop_ms(), "end": 61.5}
    assert speed["start"] > 0
    text = _report(figures, reference_loop_ms=speed)
    assert f"took {speed['start']} ms at the start and 61.5 ms at the end" in text


def test_cpu_seconds_counts_a_threads_work_and_the_whole_process():
    before_process = cpu_seconds(os.getpid())
    before_thread = cpu_seconds(os.getpid(), threading.get_native_id())
    deadline = time.thread_time() + 0.1
    while time.thread_time() < deadline:
        pass  # 0.1 s of this thread's CPU
    assert cpu_seconds(os.getpid(), threading.get_native_id()) - before_thread >= 0.05
    assert cpu_seconds(os.getpid()) - before_process >= 0.05


def test_the_report_gives_the_cpu_per_call_of_the_service_and_of_the_fhir_server():
    figures = {size: in_process(size, 1) for size in ("typical", "heavy")}
    load = {"clients": 16, "seconds": 30.0, "requests": 900, "rps": 30.0, "p50_ms": 1.0}
    load |= {"p95_ms": 2.0, "p99_ms": 3.0, "errors": 0, "workers": 3, "max_worker_rss_mb": 99}
    http = load | {"cpu_per_call": {"workers": 20.4}}
    fetched = load | {"different": 0, "cpu_per_call": {"workers": 31.7, "fhir_server": 2.8}}
    fetch = {"delay_ms": 50, "worker_class": "default", "fhir_calls_per_hook_call": 9}
    fetch |= {"same_as_prefetch": True, "one_client": {"p50_ms": 80.0, "p99_ms": 99.0}}
    text = _report(figures, http=http, fetch=[fetch | {"many_clients": fetched}])
    assert "service CPU 20.4 ms per call" in text
    assert "| 31.7 / 2.8 |" in text


def test_a_tiny_governance_benchmark_reports_every_figure(tmp_path):
    from benchmarks import governance

    output = tmp_path / "governance.md"
    assert governance.main(["--rows", "300", "--databases", "sqlite", "--output", str(output)]) == 0
    text = output.read_text()
    assert "over 300 card-history rows" in text and "load average" in text
    for figure in ("report: a year, every service", "console page: 4 weeks, one service"):
        assert f"| sqlite | {figure} |" in text
