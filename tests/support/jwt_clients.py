"""Keys, tokens and settings shared by the CDS client authentication tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from cds_service.config import Settings, settings_from

ISSUER = "https://ehr.example.com"
BASE_URL = "https://cds.example.org"
SERVICE_URL = f"{BASE_URL}/cds-services/leukopenia-patient-view"
JWKS_URL = "https://ehr.example.com/.well-known/jwks.json"
NOW = 1_750_000_000.0


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class SigningKey:
    """A client's private key and the public JWK it publishes."""

    def __init__(self, private_key: Any, kid: str, alg: str) -> None:
        self.private_key = private_key
        self.kid = kid
        self.alg = alg
        algorithm = jwt.get_algorithm_by_name(alg)
        self.public_jwk = {
            **algorithm.to_jwk(private_key.public_key(), as_dict=True),
            "kid": kid,
            "alg": alg,
            "use": "sig",
        }

    def sign(self, claims: dict[str, Any] | None = None, **header: Any) -> str:
        """A token with the standard claims updated by `claims`; a header given as None is
        left out."""
        headers = {"kid": self.kid, "typ": "JWT", **header}
        if headers["kid"] is None:
            del headers["kid"]
        # PyJWT itself drops a None typ.
        return jwt.encode(
            {**standard_claims(), **(claims or {})},
            self.private_key,
            algorithm=self.alg,
            headers=headers,
        )


def standard_claims() -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": SERVICE_URL,
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "jti": str(uuid.uuid4()),
    }


def issued_now(lifetime: int = 300) -> dict[str, int]:
    """iat and exp for code that reads the real clock (the Flask hook)."""
    now = int(time.time())
    return {"iat": now, "exp": now + lifetime}


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.public_jwk for key in keys]}


def make_config(**overrides: Any) -> Settings:
    """Checked testing settings with `overrides` (keys are setting names), environment aside."""
    return settings_from({"ENV": "testing", **overrides})
