"""gunicorn settings for `cds-service serve --production` (also usable with `gunicorn -c`).

Every value can be overridden with a GUNICORN_* environment variable; the bind address comes
from `--host/--port` (or GUNICORN_BIND). The access log shows method, path, status, size and
time only: no query string, no referrer, no headers (patient ids and tokens stay out).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
from typing import Any

from gunicorn.glogging import Logger

from cds_service.logs import escape_control


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# A call is CPU-bound (JSON, FHIR models, rules): processes, one per core plus one to cover
# waits. The sync worker takes one connection at a time, so the kernel's accept queue hands
# calls to whichever worker is free: fair and even. Measured on 2 cores with 16 keep-alive
# clients: sync 3 workers ~215 req/s, p99 ~100 ms; gthread (2 threads) ~190 req/s, p99 ~200 ms
# and up, because a gthread worker keeps every keep-alive connection it accepted and one
# worker can end up serving all of them while another idles. Sync workers close the
# connection after each answer; the reverse proxy in front keeps client connections alive.
# A deployment whose calls often wait on the EHR's FHIR server (missing prefetch) can add
# workers (GUNICORN_WORKERS) or use GUNICORN_WORKER_CLASS=gthread with GUNICORN_THREADS.
workers = _int("GUNICORN_WORKERS", min(multiprocessing.cpu_count() + 1, 8))
threads = _int("GUNICORN_THREADS", 1)  # more than 1 makes gunicorn use gthread
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
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


class EscapingLogger(Logger):
    """gunicorn's logger, with control characters escaped in every access-log field: the path
    is percent-decoded by then, and a client's `%0A` would forge a whole line."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        return {k: escape_control(v) if isinstance(v, str) else v for k, v in atoms.items()}


logger_class = EscapingLogger
# No runtime control socket: one fixed path per user would collide between instances.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """With plain `gunicorn -c` too: refuse several workers that would not share the JWT
    replay cache or the database (one line, exit 2, before any worker starts)."""
    from cds_service.config import ConfigError, load_config, validate_worker_count

    try:
        validate_worker_count(load_config(), server.cfg.workers)
    except ConfigError as error:
        print(f"cds-service: invalid setting: {error}", file=sys.stderr)
        sys.exit(2)


def post_worker_init(worker: Any) -> None:
    """Move the loaded app (FHIR model classes, knowledge, ~130k objects) out of the GC's view.

    Python's full collections otherwise walk them every few hundred calls: ~40 ms pauses that
    were the p99 under load. Frozen, a full collection takes ~8 ms."""
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    """Tell the Prometheus multiprocess collector that a worker's files are final."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
