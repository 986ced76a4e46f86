"""The ES384 test vector from the CDS Hooks 2.0 specification (§trusting-cds-clients)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cds_service.security import AuthenticationError, ClientAuthenticator, InMemoryReplayCache
from tests.support.jwt_clients import FakeClock, make_config

DATA = Path(__file__).parent / "data"
SPEC_TOKEN = (DATA / "jwt-example-token.txt").read_text().strip()
SPEC_ISSUER = "https://fhir-ehr.example.com/"
SPEC_AUDIENCE = "https://cds.example.org/cds-services/some-service"
SPEC_EXP = 1422568860


def spec_authenticator(clock) -> ClientAuthenticator:
    config = make_config(
        TRUSTED_ISSUERS={
            SPEC_ISSUER: {
                "jwks_file": str(DATA / "jwt-example-jwks-public.json"),
                "jku_allowlist": ["https://fhir-ehr.example.com/jwk_uri"],
                "tenants": ["2ddd6c3a-8e9a-44c6-a305-52111ad302a2"],
            }
        },
        # The example's iat is 3.5 years before its exp; no real token lives that long.
        JWT_MAX_LIFETIME_SECONDS=10**9,
    )
    return ClientAuthenticator(config, InMemoryReplayCache(), clock=clock)


def test_spec_example_token_verifies_before_its_expiry():
    client = spec_authenticator(FakeClock(SPEC_EXP - 60)).authenticate(
        f"Bearer {SPEC_TOKEN}", SPEC_AUDIENCE
    )

    assert client.issuer == SPEC_ISSUER
    assert client.jti == "ee22b021-e1b7-4611-ba5b-8eec6a33ac1e"
    assert client.tenant == "2ddd6c3a-8e9a-44c6-a305-52111ad302a2"


def test_spec_example_token_is_expired_on_the_real_clock():
    authenticator = spec_authenticator(time.time)
    with pytest.raises(AuthenticationError, match="expired"):
        authenticator.authenticate(f"Bearer {SPEC_TOKEN}", SPEC_AUDIENCE)
