"""Valid settings for tests that need the production profile."""

from __future__ import annotations

from typing import Any

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
