"""Checks made once before the server starts, so that a deployment mistake is one line naming
it and exit status 2 (no worker starts, no crash loop), never a failure at the first call.

- Where it listens. The service itself bounds neither connections per client nor the time a
  client may take to send its request: a few hundred slow connections hold every greenlet of
  its workers (`GUNICORN_WORKER_CONNECTIONS` x workers). So it listens on loopback (or a Unix
  socket) unless `CDS_BEHIND_PROXY` says that a buffering reverse proxy (nginx, an ingress
  controller) is its only client; the proxy limits connections per client and read times,
  ends TLS and caps bodies (docs/deploy.md). In development the same rule keeps the server
  from being an open relay to whatever `fhirServer` a caller names.
- The CA bundle the FHIR calls trust (`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`, as requests reads
  them): a missing or unreadable file would otherwise fail every fetch, found at the first call.
- The settings, the worker count, the knowledge and the service definitions with their rule
  modes (`check_settings`, the master's whole check): a bad one would fail every worker at boot.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Iterable
from pathlib import Path

from cds_service.config import ConfigError, Settings, load_config, validate_worker_count
from cds_service.services import load_site

CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def check_settings(binds: list[str], workers: int) -> None:
    """What the master checks before any worker starts (ConfigError, one line, exit 2): the
    settings, the worker count, the bind address and CA bundle, and the service definitions
    with their rule modes (a bad one would otherwise fail every worker at boot). It must not
    import requests or urllib3 (cds_service/__init__.py; tests/ops/test_gevent_patching.py)."""
    config = load_config()
    validate_worker_count(config, workers)
    check_startup(config, binds)
    load_site(config.site_dir, config.rule_modes)


def check_startup(settings: Settings, binds: Iterable[str]) -> None:
    """Raise ConfigError (one line) when the server must not start as configured."""
    check_binds(settings, binds)
    check_ca_bundle()


def _host_of(bind: str) -> str | None:
    """The host of a gunicorn bind (`host:port`, `[v6]:port`, `host`); None for a socket."""
    if bind.startswith(("unix:", "fd://")):
        return None
    if bind.startswith("["):
        return bind[1:].partition("]")[0]
    return bind.rpartition(":")[0] if bind.count(":") == 1 else bind


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any interface


def check_binds(settings: Settings, binds: Iterable[str]) -> None:
    for bind in binds:
        host = _host_of(bind)
        if host is None or is_loopback(host) or settings.behind_proxy:
            continue
        raise ConfigError(
            f"listening on {bind} needs CDS_BEHIND_PROXY=true: without a buffering reverse "
            "proxy in front (connection limits, read time-outs, TLS) listen on 127.0.0.1 "
            "(docs/deploy.md)"
        )


def check_ca_bundle() -> None:
    for name in CA_BUNDLE_VARIABLES:
        path = os.environ.get(name)
        if not path:
            continue
        if Path(path).is_dir():  # a folder of hashed certificates (c_rehash): used as is
            if not any(Path(path).iterdir()):
                raise ConfigError(f"{name}: {path!r} is an empty folder, not CA certificates")
            continue
        try:
            ssl.create_default_context(cafile=path)
        except ssl.SSLError:  # a subclass of OSError: the file was read
            raise ConfigError(
                f"{name}: {path!r} is not a bundle of CA certificates (no PEM certificate in it)"
            ) from None
        except (OSError, ValueError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise ConfigError(
                f"{name}: {path!r} is not a readable bundle of CA certificates ({reason})"
            ) from None
        return  # requests uses the first one set
