"""Settings: documented defaults, overridden by `CDS_*` environment variables, then by the
mapping passed to `create_app`. Every value is validated at start-up so a bad setting stops
the service with a clear message instead of producing wrong cards later.

Environment values are parsed as JSON when they parse (numbers, booleans, lists, objects),
otherwise taken as strings: `CDS_THRESHOLDS='{"dose_review_wbc": 3.0}'`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

ENV_PREFIX = "CDS_"

DEFAULTS: dict[str, Any] = {
    # "development": http FHIR servers, permissive CORS, unauthenticated calls allowed.
    # "production": the opposite of each.
    "ENV": "development",
    # Public base URL behind a proxy (used for JWT `aud`); empty = the URL the request came to.
    "PUBLIC_BASE_URL": "",
    # Origins allowed by CORS; "*" in development.
    "CORS_ORIGINS": ["*"],
    # Largest request body accepted (bytes); bigger bodies get 413.
    "MAX_CONTENT_LENGTH": 8 * 1024 * 1024,
    # Site overrides of the clinical thresholds in knowledge/thresholds.yaml (same keys).
    "THRESHOLDS": {},
    # Site switches of the clinical spec §6 (see knowledge/thresholds.yaml "settings").
    "CLINICAL_SETTINGS": {},
    # Directory of CDS service definitions; empty = the packaged hooks/.
    "HOOKS_DIR": "",
    # Secret for keyed hashes of patient ids (logs, card history). Set it in production.
    "PATIENT_KEY_SECRET": "development-only-secret",
    # --- Fetching from the EHR's FHIR server (cds_service/fhir_data.py) ---------------------
    # http fhirServer URLs are accepted only in development; production requires https.
    # Seconds allowed to connect, and between bytes read, per FHIR call (capped by the deadline).
    "FHIR_CALL_TIMEOUT_SECONDS": 2.0,
    # Seconds for all FHIR calls of one hook request together, so the answer stays near 500 ms.
    "FHIR_DEADLINE_SECONDS": 0.4,
    # Calls made at the same time (thread pool and connection pool size, per process).
    "FHIR_MAX_CONCURRENT_CALLS": 8,
    # Bundle pages read per prefetch key (the first included); more pages are noted, not read.
    "FHIR_MAX_PAGES": 5,
    # Largest FHIR response body read (bytes); bigger responses are abandoned mid-stream.
    "FHIR_MAX_RESPONSE_BYTES": 10 * 1024 * 1024,
    # Development only: fetch without an Authorization header when the request has a fhirServer
    # but no fhirAuthorization (open sandbox servers). Refused in production.
    "FHIR_ALLOW_UNAUTHENTICATED": False,
}


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


def _parse_env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def load_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults <- CDS_* environment <- overrides, then validated."""
    config = dict(DEFAULTS)
    for name, raw in os.environ.items():
        if name.startswith(ENV_PREFIX):
            config[name[len(ENV_PREFIX):]] = _parse_env_value(raw)
    config.update(overrides or {})
    validate_config(config)
    return config


def validate_config(config: Mapping[str, Any]) -> None:
    if config["ENV"] not in ("development", "production", "testing"):
        raise ConfigError("CDS_ENV must be development, production or testing")
    if not isinstance(config["CORS_ORIGINS"], list | str):
        raise ConfigError("CDS_CORS_ORIGINS must be a list of origins or '*'")
    if not isinstance(config["MAX_CONTENT_LENGTH"], int) or config["MAX_CONTENT_LENGTH"] <= 0:
        raise ConfigError("CDS_MAX_CONTENT_LENGTH must be a positive number of bytes")
    for key in ("THRESHOLDS", "CLINICAL_SETTINGS"):
        if not isinstance(config[key], Mapping):
            raise ConfigError(f"CDS_{key} must be a JSON object")
    if config["ENV"] == "production":
        if config["PATIENT_KEY_SECRET"] == DEFAULTS["PATIENT_KEY_SECRET"]:
            raise ConfigError("CDS_PATIENT_KEY_SECRET must be set in production")
        if config["CORS_ORIGINS"] in ("*", ["*"]):
            raise ConfigError("CDS_CORS_ORIGINS must list the EHR origins in production")
    _validate_fhir_settings(config)


def _validate_fhir_settings(config: Mapping[str, Any]) -> None:
    for key in ("FHIR_CALL_TIMEOUT_SECONDS", "FHIR_DEADLINE_SECONDS"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"CDS_{key} must be a positive number of seconds")
    for key in ("FHIR_MAX_CONCURRENT_CALLS", "FHIR_MAX_PAGES", "FHIR_MAX_RESPONSE_BYTES"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"CDS_{key} must be a positive whole number")
    if not isinstance(config["FHIR_ALLOW_UNAUTHENTICATED"], bool):
        raise ConfigError("CDS_FHIR_ALLOW_UNAUTHENTICATED must be true or false")
    if config["FHIR_ALLOW_UNAUTHENTICATED"] and not is_development(config):
        raise ConfigError("CDS_FHIR_ALLOW_UNAUTHENTICATED is for development only")


def is_development(config: Mapping[str, Any]) -> bool:
    return config["ENV"] in ("development", "testing")
