"""Settings: documented defaults, overridden by `CDS_*` environment variables, then by the
mapping passed to `create_app`. Every value is validated at start-up so a bad setting stops
the service with a clear message instead of producing wrong cards later, and an unknown name
(a misspelt variable or key) is refused rather than ignored. The result is a frozen, typed
`Settings`: modules read `settings.fhir_max_pages`, never a string key.

Environment values are parsed as JSON when they parse (numbers, booleans, lists, objects),
otherwise taken as strings: `CDS_THRESHOLDS='{"dose_review_wbc": 3.0}'`.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

from cds_service.fhir.links import base_origin

ENV_PREFIX = "CDS_"

# The public CDS Hooks sandbox signs with a key whose private half is published.
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JWKS_FILE = str(Path(__file__).parent / "security" / "sandbox-jwks.json")
ASYMMETRIC_JWT_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)

Environment = Literal["development", "production", "testing"]
DEVELOPMENT_ENVIRONMENTS = ("development", "testing")


def _read_only(value: Any) -> Any:
    """A setting's value as the frozen Settings holds it: lists become tuples and objects
    read-only copies, so no caller can change a setting after start-up."""
    if isinstance(value, list | tuple):
        return tuple(value)
    if isinstance(value, Mapping):
        return MappingProxyType(copy.deepcopy(dict(value)))
    return value


def _plain(value: Any) -> Any:
    """The JSON form of a setting's value (tuples as lists, objects as dicts)."""
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _sandbox_issuer() -> Mapping[str, Mapping[str, Any]]:
    sandbox = {
        "jwks_file": SANDBOX_JWKS_FILE,
        "jku_allowlist": ["https://sandbox.cds-hooks.org/.well-known/jwks.json"],
    }
    return MappingProxyType({SANDBOX_ISSUER: sandbox})


def _no_overrides() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Settings:
    """Every setting of the service with its documented default. The field `fhir_max_pages`
    is set by the environment variable `CDS_FHIR_MAX_PAGES` or the key `FHIR_MAX_PAGES` of
    the mapping given to `create_app`; `load_config` builds and validates it."""

    # "development": http FHIR servers, permissive CORS, unauthenticated calls allowed.
    # "production": the opposite of each.
    env: Environment = "development"
    # Public base URL behind a proxy (used for JWT `aud`); empty = the URL the request came to.
    public_base_url: str = ""
    # A buffering reverse proxy (nginx, an ingress controller) is the service's only client:
    # required to listen on an address other than loopback (cds_service/ops/startup.py).
    behind_proxy: bool = False
    # Origins allowed by CORS; "*" in development. One origin may be given as a string.
    cors_origins: tuple[str, ...] = ("*",)
    # Largest request body accepted (bytes); bigger bodies get 413.
    max_content_length: int = 8 * 1024 * 1024
    # Site overrides of the clinical thresholds in knowledge/thresholds.yaml (same keys).
    thresholds: Mapping[str, float] = field(default_factory=_no_overrides)
    # Site switches of the clinical rules §6 (see knowledge/thresholds.yaml "settings").
    clinical_settings: Mapping[str, Any] = field(default_factory=_no_overrides)
    # Directory of CDS service definitions; empty = the packaged hooks/.
    hooks_dir: str = ""
    # Rules not live, per service: {"<service id>|*": {"<rule id>|*": "live|silent|off"}}.
    # Silent rules run and are recorded but never shown (cds_service/rule_modes.py).
    rule_modes: Mapping[str, Mapping[str, str]] = field(default_factory=_no_overrides)
    # Secret for keyed hashes of patient ids (logs, card history). Set it in production.
    patient_key_secret: str = "development-only-secret"
    # --- Fetching from the EHR's FHIR server (cds_service/fhir/gather.py) ---------------------
    # http fhirServer URLs are accepted only in development; production requires https.
    # All FHIR calls of one hook call go out at once; the answer comes as soon as they are all
    # in, or at this budget (seconds). Long enough for one slow search (100-500 ms is common,
    # a cold one 1-2 s): data cut off by the budget turns clinical cards into a "data could
    # not be retrieved" card, while a longer budget keeps the clinician waiting longer when
    # the FHIR server hangs. Only paging is sequential.
    fhir_deadline_seconds: float = 2.0
    # Seconds allowed to connect, and between bytes read, per FHIR call (capped by the budget).
    fhir_call_timeout_seconds: float = 2.0
    # FHIR calls one hook call makes at the same time (at least its prefetch keys plus the
    # Medications they refer to).
    fhir_max_concurrent_calls: int = 16
    # A guard against a server whose `next` links never end: pages read per prefetch key at
    # most. Not what bounds reading: a search is read until its results cover the history the
    # rules need (clinical rules §2.6), within the call's time and byte budget, whatever the
    # page size (10 per page for 5 years of monthly CBCs is ~20 pages).
    fhir_max_pages: int = 1000
    # Largest FHIR response body read (bytes); bigger responses are abandoned mid-stream.
    # A page of 500 Observations is about 0.5 MB.
    fhir_max_response_bytes: int = 2 * 1024 * 1024
    # Largest total of FHIR bytes read for one hook call (all keys, pages and Medications).
    fhir_max_call_bytes: int = 8 * 1024 * 1024
    # Seconds a FHIR answer is remembered (per process, in memory, for the same server, URL
    # and token): order-select then order-sign for one patient read it once. 0 = off.
    fhir_cache_seconds: float = 30
    # Most bytes of FHIR answers remembered per process (oldest dropped first).
    fhir_cache_max_bytes: int = 16 * 1024 * 1024
    # Fetch without an Authorization header when the request has a fhirServer but no
    # fhirAuthorization (the public sandbox and other open test servers). null = true in
    # development (else the sandbox's data would be missing), false in production (real EHRs
    # send a token; an open fhirServer there is a misconfiguration). true is refused in
    # production.
    fhir_allow_unauthenticated: bool | None = None
    # Development only: fhirServer hosts that may be on a private or link-local address (a
    # local HAPI server by its Docker name, "fhir"); ["*"] allows any. Others are refused
    # (cds_service/fhir/targets.py); loopback is always allowed.
    fhir_allow_private_hosts: tuple[str, ...] = ()
    # --- CDS client authentication (JWT, CDS Hooks 2.0 §trusting-cds-clients) ---
    # true = every /cds-services call needs a valid JWT; null = true only in production.
    # A token that is sent is always verified, even when not required.
    auth_required: bool | None = None
    # Trusted CDS clients, by exact `iss`: where their keys are and what they may claim.
    # {"<iss>": {"jwks_file": path, "jwks_url": url, "jku_allowlist": [url], "tenants": [..]}}
    # Keys come from jwks_file (pinned) if set, else the token's allowlisted `jku`, else
    # jwks_url. A missing/null "tenants" allows any tenant. Optional "fhir_servers" (advised
    # in production): the fhirServer base URLs the issuer may name, a list for every tenant
    # or {"<tenant>": [url]}; another fhirServer gets 412 (the service never calls it).
    # The default trusts the public sandbox, whose private key is published: development
    # only, refused in production.
    trusted_issuers: Mapping[str, Mapping[str, Any]] = field(default_factory=_sandbox_issuer)
    # Accepted JWS algorithms: asymmetric only (the spec forbids `none` and HMAC).
    jwt_algorithms: tuple[str, ...] = ("ES384", "RS384", "ES256", "RS256", "ES512", "PS384")
    # Clock skew tolerated on exp, nbf and iat (seconds).
    jwt_leeway_seconds: int = 60
    # Longest exp - iat accepted; also how long a jti is remembered (best practice: <= 1 h).
    jwt_max_lifetime_seconds: float = 3600
    # How long fetched JWKS are trusted before a refetch.
    jwks_cache_seconds: float = 3600
    # Least time between two fetches of one issuer's JWKS URL (unknown-kid refreshes).
    jwks_refresh_min_interval_seconds: int = 60
    # JWKS fetch timeout (seconds) and largest body read (bytes).
    jwks_fetch_timeout_seconds: float = 5
    jwks_max_bytes: float = 64 * 1024
    # Redis for the jti replay cache shared by several workers; empty = in-process memory.
    redis_url: str = ""
    # --- Persistence, feedback, alert fatigue, governance dashboard (cds_service.governance) ---
    # SQLAlchemy URL: SQLite file (folder created) or "postgresql+psycopg://user@host/db".
    database_url: str = "sqlite:///instance/cds.sqlite3"
    # Longest wait for the database (connect, lock, statement) before giving up, in seconds.
    database_timeout_seconds: float = 5
    # Longest wait for the snooze look-up, which every hook call with a non-critical card
    # makes (~1 ms normally). Past it (a lock, a hung query) the call answers with every card
    # shown and counts a snooze_check_failures event: a hung database must not hold each call
    # for DATABASE_TIMEOUT_SECONDS.
    snooze_lookup_timeout_seconds: float = 0.25
    # Card history rows waiting for the background writer; beyond this they are dropped.
    card_history_queue_size: int = 10000
    # FHIR validation verdicts remembered per worker (~100 bytes each); 0 turns the cache off.
    validation_cache_size: int = 50000
    # An override with one of these reasons snoozes the same rule for the same patient.
    snooze_reason_system: str = "https://leukopenia-cds.example.org/CodeSystem/override-reason"
    snooze_reason_codes: tuple[str, ...] = ("already-addressed", "counts-reviewed")
    # How long such a snooze lasts; critical cards are never snoozed.
    snooze_days: int = 7
    # HTTP Basic credential of the /admin/ dashboard; no password = dashboard off (404).
    admin_user: str = "admin"
    admin_password: str = ""

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

    def by_name(self) -> Mapping[str, Any]:
        """The settings keyed by their documented names (`FHIR_MAX_PAGES`), read-only: the
        form `security/` reads (issue 14 leaves that package as it is)."""
        return MappingProxyType({name: getattr(self, name.lower()) for name in SETTING_NAMES})


SETTING_NAMES = tuple(f.name.upper() for f in fields(Settings))
# The documented defaults in their JSON form, keyed by setting name.
DEFAULTS: Mapping[str, Any] = MappingProxyType(_plain(dict(Settings().by_name())))


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


def _parse_env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def load_config(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults <- CDS_* environment <- overrides (keys are setting names), then validated."""
    overrides = overrides or {}
    refuse_unknown_environment_names(os.environ)
    refuse_unknown_names(overrides)
    config = dict(DEFAULTS)
    for name, raw in os.environ.items():
        if name.startswith(ENV_PREFIX):
            config[name[len(ENV_PREFIX) :]] = _parse_env_value(raw)
    config.update(overrides)
    validate_config(config)
    if isinstance(config["CORS_ORIGINS"], str):
        config["CORS_ORIGINS"] = [config["CORS_ORIGINS"]]  # one origin, as flask-cors reads it
    return Settings(**{name.lower(): _read_only(value) for name, value in config.items()})


def validate_config(config: Mapping[str, Any]) -> None:
    if config["ENV"] not in ("development", "production", "testing"):
        raise ConfigError("CDS_ENV must be development, production or testing")
    origins = config["CORS_ORIGINS"]
    if not isinstance(origins, str) and not (
        isinstance(origins, list) and all(isinstance(origin, str) for origin in origins)
    ):
        raise ConfigError("CDS_CORS_ORIGINS must be a list of origins or '*'")
    # Typed as strings: a numeric environment value would otherwise parse as a number.
    for key in ("HOOKS_DIR", "PATIENT_KEY_SECRET"):
        if not isinstance(config[key], str):
            raise ConfigError(f"CDS_{key} must be a string (quote a numeric one: '\"123\"')")
    if not isinstance(config["MAX_CONTENT_LENGTH"], int) or config["MAX_CONTENT_LENGTH"] <= 0:
        raise ConfigError("CDS_MAX_CONTENT_LENGTH must be a positive number of bytes")
    for key in ("THRESHOLDS", "CLINICAL_SETTINGS", "RULE_MODES"):
        if not isinstance(config[key], Mapping):
            raise ConfigError(f"CDS_{key} must be a JSON object")
    if not isinstance(config["BEHIND_PROXY"], bool):
        raise ConfigError("CDS_BEHIND_PROXY must be true or false")
    if config["ENV"] == "production":
        if config["PATIENT_KEY_SECRET"] == DEFAULTS["PATIENT_KEY_SECRET"]:
            raise ConfigError("CDS_PATIENT_KEY_SECRET must be set in production")
        if config["CORS_ORIGINS"] in ("*", ["*"]):
            raise ConfigError("CDS_CORS_ORIGINS must list the EHR origins in production")
    cache_size = config["VALIDATION_CACHE_SIZE"]
    if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
        raise ConfigError("CDS_VALIDATION_CACHE_SIZE must be a whole number, 0 or more")
    _validate_fhir_settings(config)
    _validate_production_hardening(config)
    _validate_auth_config(config)
    _validate_storage_settings(config)


def _validate_fhir_settings(config: Mapping[str, Any]) -> None:
    for key in ("FHIR_CALL_TIMEOUT_SECONDS", "FHIR_DEADLINE_SECONDS"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"CDS_{key} must be a positive number of seconds")
    seconds = config["FHIR_CACHE_SECONDS"]
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 300:
        raise ConfigError("CDS_FHIR_CACHE_SECONDS must be a number of seconds from 0 to 300")
    for key in (
        "FHIR_MAX_CONCURRENT_CALLS",
        "FHIR_MAX_PAGES",
        "FHIR_MAX_RESPONSE_BYTES",
        "FHIR_MAX_CALL_BYTES",
        "FHIR_CACHE_MAX_BYTES",
    ):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"CDS_{key} must be a positive whole number")
    allow = config["FHIR_ALLOW_UNAUTHENTICATED"]
    if allow is not None and not isinstance(allow, bool):
        raise ConfigError("CDS_FHIR_ALLOW_UNAUTHENTICATED must be true, false or null")
    if allow and not is_development(config):
        raise ConfigError("CDS_FHIR_ALLOW_UNAUTHENTICATED is for development only")
    hosts = config["FHIR_ALLOW_PRIVATE_HOSTS"]
    if not isinstance(hosts, list | tuple) or not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError("CDS_FHIR_ALLOW_PRIVATE_HOSTS must be a JSON list of host names")
    if hosts and not is_development(config):
        raise ConfigError(
            "CDS_FHIR_ALLOW_PRIVATE_HOSTS is for development only (production: fhir_servers)"
        )


def _validate_storage_settings(config: Mapping[str, Any]) -> None:
    url = config["DATABASE_URL"]
    if not isinstance(url, str) or not url.startswith(("sqlite:", "postgresql")):
        raise ConfigError("CDS_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL")
    if url.startswith("sqlite") and (":memory:" in url or url in ("sqlite://", "sqlite:///")):
        # Each connection would get its own empty database.
        raise ConfigError("CDS_DATABASE_URL must name a SQLite file, not an in-memory database")
    for key in ("DATABASE_TIMEOUT_SECONDS", "SNOOZE_LOOKUP_TIMEOUT_SECONDS"):
        timeout = config[key]
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"CDS_{key} must be a positive number")
    for key in ("CARD_HISTORY_QUEUE_SIZE", "SNOOZE_DAYS"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"CDS_{key} must be a positive whole number")
    codes = config["SNOOZE_REASON_CODES"]
    if not isinstance(codes, list) or not all(isinstance(c, str) and c for c in codes):
        raise ConfigError("CDS_SNOOZE_REASON_CODES must be a JSON list of codes")
    for key in ("SNOOZE_REASON_SYSTEM", "ADMIN_USER"):
        if not isinstance(config[key], str) or not config[key]:
            raise ConfigError(f"CDS_{key} must be a non-empty string")
    password = config["ADMIN_PASSWORD"]
    if not isinstance(password, str):
        raise ConfigError("CDS_ADMIN_PASSWORD must be a string (quote a numeric one: '\"123\"')")
    if password and config["ENV"] == "production" and len(password) < 12:
        raise ConfigError("CDS_ADMIN_PASSWORD must have at least 12 characters in production")


def is_development(config: Mapping[str, Any]) -> bool:
    """`Settings.development` of settings keyed by name (as validated, and as security/ reads
    them)."""
    return config["ENV"] in DEVELOPMENT_ENVIRONMENTS


# --- CDS client authentication settings ---

_ISSUER_KEYS = {"jwks_file", "jwks_url", "jku_allowlist", "tenants", "fhir_servers"}


def is_auth_required(config: Mapping[str, Any]) -> bool:
    if config["AUTH_REQUIRED"] is None:
        return not is_development(config)
    return bool(config["AUTH_REQUIRED"])


def _is_url(value: Any, *, https_only: bool) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    schemes = ("https",) if https_only else ("https", "http")
    return parts.scheme in schemes and bool(parts.netloc) and not parts.fragment


def _validate_issuer(issuer: str, settings: Any, production: bool) -> None:
    name = f"CDS_TRUSTED_ISSUERS[{issuer!r}]"
    if not isinstance(settings, Mapping) or not set(settings) <= _ISSUER_KEYS:
        raise ConfigError(f"{name} must be an object with keys {sorted(_ISSUER_KEYS)}")
    jku_allowlist = settings.get("jku_allowlist") or []
    if not isinstance(jku_allowlist, list):
        raise ConfigError(f"{name}.jku_allowlist must be a list of URLs")
    urls = [*jku_allowlist, *([settings["jwks_url"]] if settings.get("jwks_url") else [])]
    for url in urls:
        if not _is_url(url, https_only=production):
            raise ConfigError(f"{name}: {url!r} is not an allowed JWKS URL")
    tenants = settings.get("tenants")
    if tenants is not None and not (
        isinstance(tenants, list) and all(isinstance(t, str) for t in tenants)
    ):
        raise ConfigError(f"{name}.tenants must be a list of strings or null")
    if not settings.get("jwks_file") and not urls:
        raise ConfigError(f"{name} needs a jwks_file, a jwks_url or a jku_allowlist")
    _validate_jwks_file(name, settings.get("jwks_file"), production)
    _validate_fhir_servers(name, settings.get("fhir_servers"), production)
    if production and (
        issuer == SANDBOX_ISSUER
        or settings.get("jwks_file") == SANDBOX_JWKS_FILE
        or any(urlsplit(url).hostname == urlsplit(SANDBOX_ISSUER).hostname for url in urls)
    ):
        raise ConfigError(f"{name}: the public sandbox's key cannot be trusted in production")


def _validate_auth_config(config: Mapping[str, Any]) -> None:
    production = not is_development(config)
    if config["AUTH_REQUIRED"] not in (None, True, False):
        raise ConfigError("CDS_AUTH_REQUIRED must be true, false or null")
    issuers = config["TRUSTED_ISSUERS"]
    if not isinstance(issuers, Mapping):
        raise ConfigError("CDS_TRUSTED_ISSUERS must be a JSON object keyed by issuer")
    for issuer, settings in issuers.items():
        _validate_issuer(issuer, settings, production)
    algorithms = config["JWT_ALGORITHMS"]
    if not (
        isinstance(algorithms, list) and algorithms and set(algorithms) <= ASYMMETRIC_JWT_ALGORITHMS
    ):
        raise ConfigError(
            f"CDS_JWT_ALGORITHMS must be a non-empty list of {sorted(ASYMMETRIC_JWT_ALGORITHMS)}"
        )
    for key in ("JWT_LEEWAY_SECONDS", "JWKS_REFRESH_MIN_INTERVAL_SECONDS"):
        if not isinstance(config[key], int) or isinstance(config[key], bool) or config[key] < 0:
            raise ConfigError(f"CDS_{key} must be a whole number of seconds >= 0")
    for key in (
        "JWT_MAX_LIFETIME_SECONDS",
        "JWKS_CACHE_SECONDS",
        "JWKS_FETCH_TIMEOUT_SECONDS",
        "JWKS_MAX_BYTES",
    ):
        if (
            not isinstance(config[key], int | float)
            or isinstance(config[key], bool)
            or config[key] <= 0
        ):
            raise ConfigError(f"CDS_{key} must be a positive number")
    if config["REDIS_URL"] != "" and not (
        isinstance(config["REDIS_URL"], str)
        and urlsplit(config["REDIS_URL"]).scheme in ("redis", "rediss", "unix")
    ):
        raise ConfigError("CDS_REDIS_URL must be a redis://, rediss:// or unix:// URL, or empty")
    # The JWT `aud` is checked against this URL. Production must set it: taking the URL from
    # the Host header would let a token signed for another service be replayed here.
    base_url = config["PUBLIC_BASE_URL"]
    if (base_url or production) and not _is_url(base_url, https_only=production):
        raise ConfigError(
            "CDS_PUBLIC_BASE_URL must be the base URL clients call (https, required in production)"
        )
    if production:
        if config["AUTH_REQUIRED"] is False:
            raise ConfigError("CDS_AUTH_REQUIRED cannot be false in production")
        if not issuers:
            raise ConfigError("CDS_TRUSTED_ISSUERS must name at least one CDS client in production")


# --- Start-up refusals of issue 13: unknown names, production hardening, worker count ---

# A production CORS origin: https, host and optional port, nothing else. flask-cors reads
# "*" and other regex characters as patterns that would match origins nobody listed; an
# http:// origin is a page any network in between could have rewritten.
_PLAIN_CORS_ORIGIN = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
MIN_PATIENT_KEY_SECRET_LENGTH = 32


def refuse_unknown_environment_names(environ: Mapping[str, str]) -> None:
    """A misspelt CDS_* variable would be silently ignored: refuse it, naming the closest."""
    names = [name[len(ENV_PREFIX) :] for name in environ if name.startswith(ENV_PREFIX)]
    refuse_unknown_names(names, ENV_PREFIX)


def refuse_unknown_names(names: Iterable[str], prefix: str = "") -> None:
    """Refuse the first name (sorted) that is not a setting, naming the closest setting."""
    for name in sorted(names, key=str):
        if name in DEFAULTS:
            continue
        known = [prefix + key for key in SETTING_NAMES]
        closest = difflib.get_close_matches(prefix + str(name).upper(), known, n=1)
        hint = f"; did you mean {closest[0]}?" if closest else " (README: Configuration)"
        raise ConfigError(f"{prefix}{name} is not a setting of this service{hint}")


def _validate_production_hardening(config: Mapping[str, Any]) -> None:
    if config["ENV"] != "production":
        return
    origins = config["CORS_ORIGINS"]
    if not isinstance(origins, list) or not all(
        isinstance(o, str) and _PLAIN_CORS_ORIGIN.fullmatch(o) for o in origins
    ):
        raise ConfigError(
            "CDS_CORS_ORIGINS must list the EHR origins in production, each like "
            "https://ehr.example.org (no '*', no patterns)"
        )
    secret = config["PATIENT_KEY_SECRET"]
    if not isinstance(secret, str) or len(secret) < MIN_PATIENT_KEY_SECRET_LENGTH:
        raise ConfigError(
            f"CDS_PATIENT_KEY_SECRET must have at least {MIN_PATIENT_KEY_SECRET_LENGTH} "
            "characters in production"
        )
    if config["TRUSTED_ISSUERS"] == DEFAULTS["TRUSTED_ISSUERS"]:
        raise ConfigError(
            "set CDS_TRUSTED_ISSUERS: production needs the CDS clients it trusts "
            "(the default trusts only the public sandbox, refused in production)"
        )


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


# A JWKS file holds a few public keys (~1 KB each).
MAX_JWKS_FILE_BYTES = 1024 * 1024


def _validate_jwks_file(name: str, jwks_file: Any, production: bool) -> None:
    """Checked here, once, in the master: a missing or malformed file, or the sandbox's key in
    production, would otherwise fail every worker with a traceback (a crash loop)."""
    if jwks_file is None:
        return
    if not isinstance(jwks_file, str) or not Path(jwks_file).is_file():
        raise ConfigError(f"{name}.jwks_file: {jwks_file!r} is not a readable file")
    # Imported here: it imports this module.
    from cds_service.jwk_sets import holds_a_key_of, read_jwks_file

    where = f"{name}.jwks_file {jwks_file!r}"
    if Path(jwks_file).stat().st_size > MAX_JWKS_FILE_BYTES:
        raise ConfigError(f"{where} is larger than {MAX_JWKS_FILE_BYTES} bytes: not a JWKS file")
    try:
        keys = read_jwks_file(jwks_file)
    except ConfigError:
        raise ConfigError(f"{where} is not a JWKS document (JSON with a 'keys' list)") from None
    if not keys:
        raise ConfigError(f"{where} holds no usable signature key (EC or RSA, with a kid)")
    if production and holds_a_key_of(keys, read_jwks_file(SANDBOX_JWKS_FILE)):
        raise ConfigError(f"{where} holds the public sandbox's key, refused in production")


def _validate_fhir_servers(name: str, rule: Any, production: bool) -> None:
    if rule is None:
        return
    lists = rule.values() if isinstance(rule, Mapping) else [rule]
    message = (
        f"{name}.fhir_servers must be a list of fhirServer base URLs, or an object of such "
        "lists keyed by tenant"
    )
    for urls in lists:
        if not isinstance(urls, list):
            raise ConfigError(message)
        for url in urls:
            # Checked in the production server's master process: no requests there.
            found = base_origin(url, client_check=False) if isinstance(url, str) else None
            if found is None or (production and found.scheme != "https"):
                raise ConfigError(f"{name}.fhir_servers: {url!r} is not a plain https base URL")
