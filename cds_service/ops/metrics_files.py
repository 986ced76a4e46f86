"""Dead workers' Prometheus files folded into one archive file per metric type.

With PROMETHEUS_MULTIPROC_DIR every worker process writes its counters and histograms to its
own files (`counter_<pid>.db`, `histogram_<pid>.db`, 64 KiB or more each) and /metrics adds up
every file there. Gunicorn replaces workers all the time (GUNICORN_MAX_REQUESTS, time-outs,
reloads), and prometheus_client never removes a dead worker's counter files: they piled up
until the 64 Mi in-memory volume of deploy/k8s was full. Deleting them would make every total
drop (Prometheus reads a drop as a counter reset), so the master folds each dead worker's
values into `counter_archive.db` / `histogram_archive.db` and then deletes its files: the
totals stay the same and the folder holds one file per type per live worker, plus one.

The archive is written to a staging name that /metrics does not read, then renamed over the
old one (atomic), and only then is the dead worker's file removed: a scrape in that instant
may count the dead worker twice, never lose it; /metrics retries a scrape whose file vanished.
Runs in the gunicorn master only (child_exit), one worker at a time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict

log = logging.getLogger(__name__)

ARCHIVE = "archive"
# Gauges are not archived: the service has none, and a dead process's gauge means nothing.
SUMMED_TYPES = ("counter", "histogram", "summary")


def archive_dead_worker(pid: int, directory: str | None = None) -> None:
    """Fold worker `pid`'s counter and histogram files into the archive; never raises (it
    runs in gunicorn's master loop, which must not stop for a metrics file)."""
    folder = directory or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    try:
        multiprocess.mark_process_dead(pid, folder)  # its live gauges, if any
        for metric_type in SUMMED_TYPES:
            _fold(Path(folder), metric_type, pid)
    except Exception as error:  # a full or vanished folder: the files stay, counted as before
        log.warning("metrics files of worker %s not archived (%s)", pid, type(error).__name__)


def _fold(folder: Path, metric_type: str, pid: int) -> None:
    dead = folder / f"{metric_type}_{pid}.db"
    if not dead.exists():
        return
    archive = folder / f"{metric_type}_{ARCHIVE}.db"
    totals: dict[str, float] = {}
    for source in (archive, dead):
        if source.exists():
            for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(
                str(source)
            ):
                totals[key] = totals.get(key, 0.0) + value
    staging = folder / f"{metric_type}_{ARCHIVE}.staging"  # not *.db: no scrape reads it
    staging.unlink(missing_ok=True)
    merged = MmapedDict(str(staging))
    try:
        for key, value in totals.items():
            merged.write_value(key, value, 0.0)
    finally:
        merged.close()
    os.replace(staging, archive)
    dead.unlink()
