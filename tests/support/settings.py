"""Valid settings for tests that need the production profile, and a way to change the
settings of an app a fixture made."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Flask

from cds_service.runtime import install, runtime

PRODUCTION: dict[str, Any] = {
    "ENV": "production",
    "PATIENT_KEY_SECRET": "a-real-secret-for-tests-0123456789abcdef",
    "CORS_ORIGINS": ["https://ehr.example.org"],
    "PUBLIC_BASE_URL": "https://cds.example.org",
    "TRUSTED_ISSUERS": {
        "https://ehr.example.org": {"jwks_url": "https://ehr.example.org/.well-known/jwks.json"}
    },
}


def production(**overrides: Any) -> dict[str, Any]:
    return {**PRODUCTION, **overrides}


def change_settings(app: Flask, **changes: Any) -> None:
    """Replace fields of `app`'s Settings (`fhir_deadline_seconds=5.0`), unvalidated."""
    running = runtime(app)
    install(app, replace(running, settings=replace(running.settings, **changes)))
