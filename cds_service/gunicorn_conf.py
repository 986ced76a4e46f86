"""gunicorn settings for `cds-service serve --production` (also usable with `gunicorn -c`).

Every value can be overridden with a GUNICORN_* environment variable; the bind address comes
from `--host/--port` (or GUNICORN_BIND). The access log shows method, path, status, size and
time only: no query string, no referrer, no headers (patient ids and tokens stay out).
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# CPU-bound work (JSON, FHIR models, rules) wants processes, about one per core plus one to
# cover waits. Threads share a worker's GIL: with 4 threads x 5 workers on 2 cores, 20
# threads fought over the CPUs and p99 reached ~0.8-1.2 s. 2 threads per worker still
# overlap a FHIR fetch or database wait with another call.
workers = _int("GUNICORN_WORKERS", min(multiprocessing.cpu_count() + 1, 8))
threads = _int("GUNICORN_THREADS", 2)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8080")
# Hook calls must answer in well under a second; a worker stuck for 30 s is restarted.
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 20)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Recycle workers now and then (jittered so they do not restart together): bounds memory growth.
max_requests = _int("GUNICORN_MAX_REQUESTS", 20000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 2000)
# Each worker builds its own app: database pools, the history writer thread and the FHIR
# thread pool are created after the fork. `kill -HUP` reloads workers gracefully.
preload_app = False
# Behind the reverse proxy: trust its X-Forwarded-* only from these addresses.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
limit_request_line = 4094
limit_request_fields = 100
# GUNICORN_ACCESSLOG="" turns the access log off (the benchmark does, at hundreds per second).
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# %(U)s is the path without the query string; %(M)s the time in milliseconds.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
proc_name = "cds-service"
# No runtime control socket: one fixed path per user would collide between instances.
control_socket_disable = True


def child_exit(server: Any, worker: Any) -> None:
    """Tell the Prometheus multiprocess collector that a worker's files are final."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
