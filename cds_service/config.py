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
    # --- Persistence, feedback, alert fatigue, governance dashboard (cds_service.storage) ---
    # SQLAlchemy URL: SQLite file (folder created) or "postgresql+psycopg://user@host/db".
    "DATABASE_URL": "sqlite:///instance/cds.sqlite3",
    # Longest wait for the database (connect, lock, statement) before giving up, in seconds.
    "DATABASE_TIMEOUT_SECONDS": 5,
    # Card history rows waiting for the background writer; beyond this they are dropped.
    "CARD_HISTORY_QUEUE_SIZE": 10000,
    # An override with one of these reasons snoozes the same rule for the same patient.
    "SNOOZE_REASON_SYSTEM": "https://leukopenia-cds.example.org/CodeSystem/override-reason",
    "SNOOZE_REASON_CODES": ["already-addressed", "counts-reviewed"],
    # How long such a snooze lasts; critical cards are never snoozed.
    "SNOOZE_DAYS": 7,
    # HTTP Basic credential of the /admin/ dashboard; no password = dashboard off (404).
    "ADMIN_USER": "admin",
    "ADMIN_PASSWORD": "",
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
    _validate_storage_settings(config)


def _validate_storage_settings(config: Mapping[str, Any]) -> None:
    url = config["DATABASE_URL"]
    if not isinstance(url, str) or not url.startswith(("sqlite:", "postgresql")):
        raise ConfigError("CDS_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL")
    if url.startswith("sqlite") and (":memory:" in url or url in ("sqlite://", "sqlite:///")):
        # Each connection would get its own empty database.
        raise ConfigError("CDS_DATABASE_URL must name a SQLite file, not an in-memory database")
    timeout = config["DATABASE_TIMEOUT_SECONDS"]
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError("CDS_DATABASE_TIMEOUT_SECONDS must be a positive number")
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
    return config["ENV"] in ("development", "testing")
