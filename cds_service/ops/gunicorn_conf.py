"""gunicorn settings for `cds-service serve --production` (also usable with `gunicorn -c`).

The values a site may change are declared settings (cds_service/config.py) set by GUNICORN_*
environment variables, checked like the CDS_* ones: a misspelt name or a bad value stops the
master with one line and exit status 2. The bind address comes from `--host/--port` (or
GUNICORN_BIND). The access log shows method, path, status, size and time only: no query
string, no referrer, no headers (patient ids and tokens stay out).
"""

from __future__ import annotations

import gc
import os
import sys
import warnings
from typing import Any, NoReturn

from gevent.monkey import MonkeyPatchWarning
from gunicorn.glogging import Logger

from cds_service.config import ConfigError, load_config
from cds_service.ops.logs import escape_control


def _refuse(error: ConfigError) -> NoReturn:
    """One line and exit status 2, before any worker starts (not gunicorn's traceback)."""
    print(f"cds-service: invalid setting: {error}", file=sys.stderr)
    sys.exit(2)


try:
    settings = load_config()
except ConfigError as error:
    _refuse(error)


# Worker model: gevent (benchmarks/results/workers.md has the side-by-side figures).
# A call is CPU-bound (JSON, FHIR models, rules) when the prefetch holds the data, and waits
# 100-500 ms per FHIR round when it does not. A sync worker is held for the whole wait, so
# three of them served ~17 fetch-mode calls a second whatever the CPU. A gevent worker runs
# other calls while one waits on the EHR's FHIR server, and a call that computes runs to its
# end without thread switches, so the prefetch path keeps the sync worker's latency. It also
# reads each request in its own greenlet: a client trickling its request (slowloris) holds one
# greenlet, not the worker, so /healthz stays up without a buffering proxy (still advised: TLS,
# body limits, timeouts). Everything a worker uses cooperates once gevent patches the standard
# library (before the app loads): requests/urllib3 and redis (sockets), psycopg >= 3.1.14
# (gevent-aware waits), the card-history writer thread (a greenlet), the FHIR fetch pool
# (greenlets), prometheus multiprocess files and gc.freeze (no I/O). SQLite calls block the
# worker while they run: one more reason it is for development only.
# GUNICORN_WORKER_CLASS=sync restores one call per process at a time. (Known gevent noise: a
# worker that exits may print "Exception ignored in _removeHandlerRef" at interpreter
# shutdown, gevent issue 2148; harmless.)
# A gevent worker patches the standard library when it starts. If the master had already
# imported a module that copies names out of `ssl` (urllib3 does), gevent warns and that copy
# stays unpatched: every HTTPS call of the worker (the EHR's FHIR server, the JWKS) then fails
# with RecursionError (gevent issue 1016). The master imports neither requests nor urllib3
# (cds_service/__init__.py); should a change ever bring one in, the warning is an error and
# the worker fails to boot, so the server stops at start-up instead of serving without HTTPS.
warnings.filterwarnings("error", category=MonkeyPatchWarning)

workers = settings.gunicorn_workers
worker_class = settings.gunicorn_worker_class
threads = settings.gunicorn_threads
worker_connections = settings.gunicorn_worker_connections
bind = settings.gunicorn_bind
# Hook calls must answer in well under a second; a worker stuck for 30 s is restarted.
timeout = settings.gunicorn_timeout
graceful_timeout = settings.gunicorn_graceful_timeout
keepalive = settings.gunicorn_keepalive
max_requests = settings.gunicorn_max_requests
max_requests_jitter = settings.gunicorn_max_requests_jitter
# Each worker builds its own app: database pools, the history writer thread and the FHIR
# thread pool are created after the fork. `kill -HUP` reloads workers gracefully.
preload_app = False
# Behind the reverse proxy: trust its X-Forwarded-* only from these addresses.
forwarded_allow_ips = settings.gunicorn_forwarded_allow_ips
limit_request_line = 4094
limit_request_fields = 100
# GUNICORN_ACCESSLOG="" turns the access log off (the benchmark does, at hundreds per second).
accesslog = settings.gunicorn_accesslog or None
errorlog = "-"
loglevel = settings.gunicorn_loglevel
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
    """With plain `gunicorn -c` too: the master's checks of `cds-service serve --production`
    (startup.check_settings: settings, workers, bind, CA bundle, services and rule modes), one
    line and exit 2 before any worker starts."""
    from cds_service.ops.startup import check_settings

    try:
        check_settings(server.cfg.bind, server.cfg.workers)
    except ConfigError as error:
        _refuse(error)


# Young-generation collections start when this many more containers (dicts, lists) have been
# made than freed. A typical call holds ~3,000-6,000 at its peak (its parsed FHIR JSON), all
# freed by reference counting when it ends: at Python's default of 700 the collector ran ~5
# times inside every call, scanning that live data to find no garbage (0.5-0.9 ms of a ~20 ms
# call). At 50,000 it runs when garbage has really built up or several calls are in flight at
# once; the cyclic garbage it may wait for is bounded by the same number (a few MB).
YOUNG_COLLECTION_THRESHOLD = 50_000


def post_worker_init(worker: Any) -> None:
    """Tune the garbage collector for this worker's loaded app.

    Freezing moves the app (FHIR model classes, knowledge, ~130k objects) out of the GC's
    view: Python's full collections otherwise walk them every few hundred calls, ~40 ms pauses
    that were the p99 under load (frozen: ~1 ms)."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, oldest)


def child_exit(server: Any, worker: Any) -> None:
    """Fold a dead worker's metric files into the archive (cds_service/ops/metrics_files.py),
    so that restarts do not fill PROMETHEUS_MULTIPROC_DIR."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from cds_service.ops.metrics_files import archive_dead_worker

        archive_dead_worker(worker.pid)
