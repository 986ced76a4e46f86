"""Issue 24: dead workers' Prometheus files are folded into one archive per type, so worker
restarts no longer fill PROMETHEUS_MULTIPROC_DIR (a 64 Mi in-memory volume in deploy/k8s),
and the totals /metrics reports do not change when a worker dies."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from cds_service.ops import gunicorn_conf
from cds_service.ops.metrics_files import archive_dead_worker

REQUESTS = ("cds_http_requests", "cds_http_requests_total", ["endpoint", "status"])
LATENCY = "cds_hook_request_duration_seconds"


def _write_worker(folder: Path, pid: int, calls: int) -> None:
    """What one worker's prometheus_client writes: a counter and a histogram file."""
    counters = MmapedDict(str(folder / f"counter_{pid}.db"))
    family, sample, labels = REQUESTS
    key = mmap_key(family, sample, labels, ["call_service", "200"], "HTTP requests.")
    counters.write_value(key, float(calls), 0.0)
    counters.close()
    histograms = MmapedDict(str(folder / f"histogram_{pid}.db"))
    for le, count in (("0.1", calls - 1), ("+Inf", 1)):
        bucket = mmap_key(LATENCY, f"{LATENCY}_bucket", ["le"], [le], "Latency.")
        histograms.write_value(bucket, float(count), 0.0)
    histograms.write_value(mmap_key(LATENCY, f"{LATENCY}_sum", [], [], "Latency."), 0.5, 0.0)
    histograms.close()


def _scrape(folder: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    values = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_restarts_keep_the_totals_and_not_the_files(tmp_path):
    live = 9999
    _write_worker(tmp_path, live, calls=3)
    for dead in range(100, 300):  # 200 worker restarts
        _write_worker(tmp_path, dead, calls=5)
        archive_dead_worker(dead, str(tmp_path))
    values = _scrape(tmp_path)
    assert values['cds_http_requests_total{endpoint="call_service",status="200"}'] == 3 + 200 * 5
    assert values[f'{LATENCY}_bucket{{le="0.1"}}'] == 2 + 200 * 4
    assert values[f'{LATENCY}_bucket{{le="+Inf"}}'] == 3 + 200 * 5  # cumulative
    assert values[f"{LATENCY}_count"] == 3 + 200 * 5
    assert values[f"{LATENCY}_sum"] == pytest.approx(0.5 * 201)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "counter_9999.db",
        "counter_archive.db",
        "histogram_9999.db",
        "histogram_archive.db",
    ]


def test_gunicorns_child_exit_archives_the_dead_workers_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    _write_worker(tmp_path, 4242, calls=7)
    before = _scrape(tmp_path)
    gunicorn_conf.child_exit(None, SimpleNamespace(pid=4242))
    assert not (tmp_path / "counter_4242.db").exists()
    assert not (tmp_path / "histogram_4242.db").exists()
    assert _scrape(tmp_path) == before


def test_a_folder_that_went_away_does_not_raise(tmp_path):
    archive_dead_worker(1, str(tmp_path / "gone"))  # logged, not raised: the master goes on
