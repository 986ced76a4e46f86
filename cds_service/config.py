"""Settings: each declared once below (name, type, bounds, default, one line of documentation),
set by `CDS_*` environment variables (the production server's by `GUNICORN_*`), then by the
mapping passed to `create_app`. Every value is checked at start-up against its declaration
(cds_service/settings_model.py), then the rules that tie settings together (production
hardening, trusted issuers) are checked, so a bad setting stops the service with a clear
message instead of producing wrong cards later; an unknown name is refused rather than ignored.
The result is a frozen, typed `Settings`: modules read `settings.fhir_max_pages`, never a
string key. docs/configuration.md lists them all (`cds-service settings` prints the tables).
Clinical thresholds, switches, local codes and service definitions are files of the site
profile (`CDS_SITE_DIR`, cds_service/knowledge/site.py), not settings.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

# Re-exported: every start-up check raises it (its own module keeps jwk_sets off this one).
from cds_service.config_error import ConfigError as ConfigError
from cds_service.origins import is_web_url
from cds_service.settings_model import (
    declarations,
    environment_values,
    refuse_unknown_names,
    setting,
    settings_table,
)
from cds_service.trusted_issuers import SANDBOX_ISSUERS, check_trusted_issuers

Environment = Literal["development", "production", "testing"]
DEVELOPMENT_ENVIRONMENTS = ("development", "testing")
# Asymmetric only: the spec forbids `none` and HMAC.
JwtAlgorithm = Literal[
    "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"
]
WorkerClass = Literal["gevent", "sync", "gthread"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]

MiB = 1024 * 1024


def _is_database_url(url: str) -> bool:
    # An in-memory SQLite database would be a new empty one for each connection.
    in_memory = url.startswith("sqlite") and (
        ":memory:" in url or url in ("sqlite://", "sqlite:///")
    )
    return url.startswith(("sqlite:", "postgresql")) and not in_memory


def _is_redis_url(url: str) -> bool:
    return url == "" or urlsplit(url).scheme in ("redis", "rediss", "unix")


def _is_base_url(url: str) -> bool:
    return url == "" or is_web_url(url, https_only=False)


def _default_workers() -> int:
    return min(multiprocessing.cpu_count() + 1, 8)


@dataclass(frozen=True)
class ServiceSettings:
    """The service: its environment, clients, limits and site profile"""

    env: Environment = setting(
        "development",
        doc="development: http FHIR servers, open CORS, no JWT needed; production: none of these",
    )
    public_base_url: str = setting(
        "",
        valid=_is_base_url,
        expected="an http(s) URL, or empty",
        doc="Base URL clients call, the JWT `aud` (required in production); empty = the request's",
    )
    # Required to listen on an address other than loopback (cds_service/ops/startup.py).
    behind_proxy: bool = setting(
        False, doc="A buffering reverse proxy (nginx, an ingress) is the service's only client"
    )
    cors_origins: tuple[str, ...] = setting(
        ("*",),
        one_string_is_a_list=True,
        doc='Origins allowed by CORS; "*" in development only, plain https origins in production',
    )
    max_content_length: int = setting(
        8 * MiB, minimum=1, doc="Largest request body accepted (bytes); bigger ones get 413"
    )
    site_dir: str = setting(
        "",
        doc="Site profile folder: thresholds, switches, local codes, hooks (docs/site-profile.md)",
    )
    # Silent rules run and are recorded but never shown (cds_service/rule_modes.py).
    rule_modes: Mapping[str, Mapping[str, str]] = setting(
        {}, doc='Rules not live: {"<service id>|*": {"<rule id>|*": "live|silent|off"}}'
    )
    patient_key_secret: str = setting(
        "development-only-secret",
        doc="Secret keying the hashes of patient ids (logs, history); 32+ characters in production",
    )


@dataclass(frozen=True)
class FhirSettings:
    """Reading the EHR's FHIR server"""

    # All FHIR calls of one hook call go out at once; the answer comes as soon as they are all
    # in, or at this budget. Long enough for one slow search (100-500 ms is common, a cold one
    # 1-2 s): data cut off by the budget turns clinical cards into a "data could not be
    # retrieved" card, while a longer budget keeps the clinician waiting longer when the FHIR
    # server hangs. Only paging is sequential.
    fhir_deadline_seconds: float = setting(
        2.0, above=0, doc="Time budget of all FHIR calls of one hook call (seconds)"
    )
    fhir_call_timeout_seconds: float = setting(
        2.0,
        above=0,
        doc="Connect and between-bytes timeout of one FHIR call (seconds, capped by the budget)",
    )
    fhir_max_concurrent_calls: int = setting(
        16,
        minimum=1,
        doc="FHIR calls one hook call makes at once (its prefetch keys plus Medications)",
    )
    # Not what bounds reading: a search is read until its results cover the history the rules
    # need (clinical rules §2.6), within the call's time and byte budget, whatever the page
    # size (10 per page for 5 years of monthly CBCs is ~20 pages).
    fhir_max_pages: int = setting(
        1000,
        minimum=1,
        doc="Pages read per prefetch key at most: a guard against endless `next` links",
    )
    fhir_max_response_bytes: int = setting(
        2 * MiB,
        minimum=1,
        doc="Largest FHIR response body read (bytes; 500 Observations are ~0.5 MB)",
    )
    fhir_max_call_bytes: int = setting(
        8 * MiB, minimum=1, doc="Largest total of FHIR bytes read for one hook call (bytes)"
    )
    # order-select then order-sign for one patient read it once.
    fhir_cache_seconds: float = setting(
        30,
        minimum=0,
        maximum=300,
        doc="Seconds a FHIR answer is remembered per process (same server, URL, token); 0 = off",
    )
    fhir_cache_max_bytes: int = setting(
        16 * MiB,
        minimum=1,
        doc="Most bytes of FHIR answers remembered per process (oldest dropped first)",
    )
    # null: true in development (else the sandbox's data would be missing), false in production
    # (real EHRs send a token; an open fhirServer there is a misconfiguration).
    fhir_allow_unauthenticated: bool | None = setting(
        None, doc="Read a fhirServer sent without fhirAuthorization; null = in development only"
    )
    # Others are refused (cds_service/fhir/targets.py); loopback is always allowed.
    fhir_allow_private_hosts: tuple[str, ...] = setting(
        (),
        doc='Development only: fhirServer hosts allowed on private addresses ("fhir"); ["*"] = any',
    )
    validation_cache_size: int = setting(
        50000,
        minimum=0,
        doc="FHIR validation verdicts remembered per worker (~100 bytes each); 0 = off",
    )


@dataclass(frozen=True)
class ClientAuthSettings:
    """CDS client authentication (JWT, CDS Hooks 2.0 §trusting-cds-clients)"""

    auth_required: bool | None = setting(
        None,
        doc="Calls to /cds-services need a JWT; null = in production (one sent is always checked)",
    )
    # {"<iss>": {"jwks_file": path, "jwks_url": url, "jku_allowlist": [url], "tenants": [..],
    # "fhir_servers": [url] or {"<tenant>": [url]}}}. Keys come from jwks_file (pinned) if set,
    # else the token's allowlisted `jku`, else jwks_url. A missing/null "tenants" allows any
    # tenant. "fhir_servers" (advised in production): the fhirServer base URLs the issuer may
    # name; another gets 412 (the service never calls it). The default trusts the public
    # sandbox, whose private key is published: development only, refused in production.
    trusted_issuers: Mapping[str, Mapping[str, Any]] = setting(
        SANDBOX_ISSUERS,
        shown_default="the public sandbox (development only)",
        doc="Trusted CDS clients by exact `iss`: their keys, tenants and fhirServers (see below)",
    )
    jwt_algorithms: tuple[JwtAlgorithm, ...] = setting(
        ("ES384", "RS384", "ES256", "RS256", "ES512", "PS384"),
        non_empty=True,
        doc="Accepted JWS algorithms (asymmetric only: the spec forbids none and HMAC)",
    )
    jwt_leeway_seconds: int = setting(
        60, minimum=0, doc="Clock skew tolerated on exp, nbf and iat (seconds)"
    )
    jwt_max_lifetime_seconds: float = setting(
        3600, above=0, doc="Longest exp - iat accepted, and how long a jti is remembered (seconds)"
    )
    jwks_cache_seconds: float = setting(
        3600, above=0, doc="How long fetched JWKS are trusted before a refetch (seconds)"
    )
    jwks_refresh_min_interval_seconds: int = setting(
        60, minimum=0, doc="Least time between two fetches of one issuer's JWKS URL (seconds)"
    )
    jwks_fetch_timeout_seconds: float = setting(5, above=0, doc="JWKS fetch timeout (seconds)")
    jwks_max_bytes: int = setting(64 * 1024, minimum=1, doc="Largest JWKS body read (bytes)")
    redis_url: str = setting(
        "",
        valid=_is_redis_url,
        expected="a redis://, rediss:// or unix:// URL, or empty",
        doc="Redis of the JWT replay cache shared by several workers; empty = in-process memory",
    )


@dataclass(frozen=True)
class GovernanceSettings:
    """Card history, feedback, snoozes and the governance dashboard"""

    database_url: str = setting(
        "sqlite:///instance/cds.sqlite3",
        valid=_is_database_url,
        expected="a sqlite:/// file or postgresql+psycopg:// URL",
        doc="SQLAlchemy URL: a SQLite file (folder created) or postgresql+psycopg://user@host/db",
    )
    database_timeout_seconds: float = setting(
        5, above=0, doc="Longest wait for the database (connect, lock, statement; seconds)"
    )
    # Past it (a lock, a hung query) the call answers with every card shown and counts a
    # snooze_check_failures event: a hung database must not hold each call for
    # DATABASE_TIMEOUT_SECONDS.
    snooze_lookup_timeout_seconds: float = setting(
        0.25,
        above=0,
        doc="Longest wait for the snooze look-up of a hook call (seconds; ~1 ms normally)",
    )
    card_history_queue_size: int = setting(
        10000, minimum=1, doc="Card history rows waiting for the background writer; beyond, dropped"
    )
    snooze_reason_system: str = setting(
        "https://leukopenia-cds.example.org/CodeSystem/override-reason",
        non_empty=True,
        doc="Code system of the override reasons that snooze a rule for a patient",
    )
    snooze_reason_codes: tuple[str, ...] = setting(
        ("already-addressed", "counts-reviewed"),
        doc="Override reasons that snooze the same rule for the same patient",
    )
    snooze_days: int = setting(
        7, minimum=1, doc="How long a snooze lasts (days); critical cards are never snoozed"
    )
    admin_user: str = setting(
        "admin", non_empty=True, doc="User name of the /admin/ dashboard (HTTP Basic)"
    )
    admin_password: str = setting(
        "",
        doc="/admin/ dashboard password; empty = dashboard off (404); 12+ characters in production",
    )


@dataclass(frozen=True)
class ServerSettings:
    """The production server (gunicorn: `cds-service serve --production`)"""

    # gevent: benchmarks/results/workers.md has the side-by-side figures.
    gunicorn_workers: int = setting(
        default_factory=_default_workers,
        minimum=1,
        shown_default="one more than the cores, at most 8",
        doc="Worker processes of the production server",
    )
    gunicorn_worker_class: WorkerClass = setting(
        "gevent",
        doc="gevent: many calls per worker while they wait on FHIR; sync: one call per process",
    )
    gunicorn_threads: int = setting(1, minimum=1, doc="Threads per worker (gthread workers only)")
    # Each waiting call holds its parsed request: bounded memory. Beyond it, connections wait in
    # the listen queue for any worker.
    gunicorn_worker_connections: int = setting(
        100, minimum=1, doc="Calls one gevent worker holds at once"
    )
    gunicorn_bind: str = setting(
        "127.0.0.1:8080",
        non_empty=True,
        doc="Address to listen on (`cds-service serve --host/--port` sets it)",
    )
    gunicorn_timeout: int = setting(
        30, minimum=1, doc="A worker silent this long (seconds) is restarted"
    )
    gunicorn_graceful_timeout: int = setting(
        20, minimum=0, doc="Time calls in progress get to finish when a worker stops (seconds)"
    )
    # 0: each call is handed by the kernel to a worker free to accept it; a kept-alive
    # connection would tie a client to one worker while another idles. The proxy keeps
    # client connections alive.
    gunicorn_keepalive: int = setting(
        0, minimum=0, doc="Seconds a connection is kept alive after an answer; 0 = closed"
    )
    gunicorn_max_requests: int = setting(
        20000,
        minimum=0,
        doc="Calls after which a worker is recycled (bounds memory growth); 0 = never",
    )
    gunicorn_max_requests_jitter: int = setting(
        2000,
        minimum=0,
        doc="Random extra calls before recycling, so workers do not restart together",
    )
    gunicorn_forwarded_allow_ips: str = setting(
        "127.0.0.1",
        non_empty=True,
        doc="Addresses (comma-separated, or *) whose X-Forwarded-* headers are trusted: the proxy",
    )
    gunicorn_accesslog: str = setting(
        "-", doc='Access log file; "-" = standard output, empty = off'
    )
    gunicorn_loglevel: LogLevel = setting("info", doc="Level of gunicorn's own log")


# The groups of settings, in the order docs/configuration.md lists them.
GROUPS = (ServiceSettings, FhirSettings, ClientAuthSettings, GovernanceSettings, ServerSettings)


@dataclass(frozen=True)
class Settings(
    ServerSettings, GovernanceSettings, ClientAuthSettings, FhirSettings, ServiceSettings
):
    """Every setting of the service (its fields come from the groups: the last base first).
    The field `fhir_max_pages` is set by the environment variable `CDS_FHIR_MAX_PAGES` or the
    key `FHIR_MAX_PAGES` of the mapping given to `create_app`; `load_config` builds and checks
    it."""

    @property
    def development(self) -> bool:
        """Development and testing: http FHIR servers, open CORS, no JWT required."""
        return self.env in DEVELOPMENT_ENVIRONMENTS

    @property
    def reads_fhir_without_token(self) -> bool:
        """Whether a fhirServer without fhirAuthorization may be read (null: in development)."""
        if self.fhir_allow_unauthenticated is None:
            return self.development
        return self.fhir_allow_unauthenticated

    @property
    def requires_token(self) -> bool:
        """Whether every /cds-services call needs a valid JWT (null: in production)."""
        if self.auth_required is None:
            return not self.development
        return self.auth_required


DECLARED = declarations(Settings)
# The environment variables that set a setting (CDS_FHIR_MAX_PAGES, GUNICORN_WORKERS).
VARIABLES = frozenset(item.variable for item in DECLARED.values())


# Settings that became files of the site profile (CDS_SITE_DIR, docs/site-profile.md): a site
# that still sets one is told where it went.
MOVED_TO_SITE_PROFILE = {
    name: f"put it in {file} of the site profile folder named by CDS_SITE_DIR "
    "(docs/site-profile.md)"
    for name, file in (
        ("THRESHOLDS", "thresholds.yaml"),
        ("CLINICAL_SETTINGS", "clinical.yaml"),
        ("HOOKS_DIR", "hooks/"),
    )
}


def load_config(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] = os.environ
) -> Settings:
    """Defaults <- CDS_* and GUNICORN_* environment <- overrides (keys are setting names)."""
    from_environment = environment_values(environ, DECLARED, MOVED_TO_SITE_PROFILE)
    return settings_from({**from_environment, **(overrides or {})})


def settings_from(values: Mapping[str, Any]) -> Settings:
    """The defaults <- `values` (keys are setting names), each checked against its
    declaration, then the rules that tie settings together."""
    refuse_unknown_names(values, DECLARED, MOVED_TO_SITE_PROFILE)
    settings = Settings(
        **{
            item.attribute: item.check(values[name]) if name in values else item.default()
            for name, item in DECLARED.items()
        }
    )
    _check_development_only(settings)
    _check_production(settings)
    _check_authentication(settings)
    return settings


DOCS_START, DOCS_END = "<!-- settings:start -->\n", "<!-- settings:end -->"


def documentation_table() -> str:
    """The markdown tables of every setting (docs/configuration.md, `cds-service settings`)."""
    return settings_table(GROUPS)


def with_documentation_table(page: str) -> str:
    """`page` (docs/configuration.md) with the tables between its markers generated anew."""
    before, rest = page.split(DOCS_START, 1)
    return before + DOCS_START + documentation_table() + DOCS_END + rest.split(DOCS_END, 1)[1]


# --- Rules that tie settings together ----------------------------------------------------------


def _check_development_only(settings: Settings) -> None:
    if settings.development:
        return
    if settings.fhir_allow_unauthenticated:
        raise ConfigError("CDS_FHIR_ALLOW_UNAUTHENTICATED is for development only")
    if settings.fhir_allow_private_hosts:
        raise ConfigError(
            "CDS_FHIR_ALLOW_PRIVATE_HOSTS is for development only (production: fhir_servers)"
        )


# A production CORS origin: https, host and optional port, nothing else. flask-cors reads
# "*" and other regex characters as patterns that would match origins nobody listed; an
# http:// origin is a page any network in between could have rewritten.
_PLAIN_CORS_ORIGIN = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
MIN_PATIENT_KEY_SECRET_LENGTH = 32
MIN_ADMIN_PASSWORD_LENGTH = 12


def _check_production(settings: Settings) -> None:
    if settings.development:
        return
    if settings.patient_key_secret == Settings.patient_key_secret:
        raise ConfigError("CDS_PATIENT_KEY_SECRET must be set in production")
    if not all(_PLAIN_CORS_ORIGIN.fullmatch(origin) for origin in settings.cors_origins):
        raise ConfigError(
            "CDS_CORS_ORIGINS must list the EHR origins in production, each like "
            "https://ehr.example.org (no '*', no patterns)"
        )
    if len(settings.patient_key_secret) < MIN_PATIENT_KEY_SECRET_LENGTH:
        raise ConfigError(
            f"CDS_PATIENT_KEY_SECRET must have at least {MIN_PATIENT_KEY_SECRET_LENGTH} "
            "characters in production"
        )
    if settings.trusted_issuers == SANDBOX_ISSUERS:
        raise ConfigError(
            "set CDS_TRUSTED_ISSUERS: production needs the CDS clients it trusts "
            "(the default trusts only the public sandbox, refused in production)"
        )
    if settings.admin_password and len(settings.admin_password) < MIN_ADMIN_PASSWORD_LENGTH:
        raise ConfigError(
            f"CDS_ADMIN_PASSWORD must have at least {MIN_ADMIN_PASSWORD_LENGTH} characters "
            "in production"
        )


def _check_authentication(settings: Settings) -> None:
    production = not settings.development
    check_trusted_issuers(settings.trusted_issuers, production)
    # The JWT `aud` is checked against this URL. Production must set it: taking the URL from
    # the Host header would let a token signed for another service be replayed here.
    if production and not is_web_url(settings.public_base_url, https_only=True):
        raise ConfigError(
            "CDS_PUBLIC_BASE_URL must be the base URL clients call (https, required in production)"
        )
    if production and settings.auth_required is False:
        raise ConfigError("CDS_AUTH_REQUIRED cannot be false in production")
    if production and not settings.trusted_issuers:
        raise ConfigError("CDS_TRUSTED_ISSUERS must name at least one CDS client in production")


def validate_worker_count(settings: Settings, workers: int) -> None:
    """Several worker processes share nothing in memory: the JWT replay cache must be Redis
    (else a token is accepted once per worker) and the database must not be SQLite."""
    if workers <= 1 or settings.env != "production":
        return
    if not settings.redis_url:
        raise ConfigError(
            f"{workers} workers need CDS_REDIS_URL (the shared JWT replay cache); "
            "or run one worker (GUNICORN_WORKERS=1)"
        )
    if settings.database_url.startswith("sqlite"):
        raise ConfigError(
            f"{workers} workers need a PostgreSQL CDS_DATABASE_URL, not SQLite; "
            "or run one worker (GUNICORN_WORKERS=1)"
        )
