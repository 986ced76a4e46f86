"""Authentication settings: production refuses to start without trusted clients, with the
public sandbox key, or without tokens; development trusts the sandbox by default."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from cds_service.config import ConfigError, load_config
from cds_service.security import AuthenticationError, ClientAuthenticator, InMemoryReplayCache
from cds_service.trusted_issuers import SANDBOX_ISSUER, SANDBOX_JWKS_FILE
from tests.support.jwt_clients import BASE_URL, ISSUER, SERVICE_URL, make_config

from .test_flask_integration import PRODUCTION

SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"


def test_production_without_a_trusted_issuer_is_refused():
    with pytest.raises(ConfigError, match="at least one"):
        make_config(**PRODUCTION, TRUSTED_ISSUERS={})


def test_production_refuses_the_default_sandbox_issuer():
    with pytest.raises(ConfigError, match="sandbox"):
        make_config(**PRODUCTION)


@pytest.mark.parametrize(
    "issuers",
    [
        {ISSUER: {"jwks_file": SANDBOX_JWKS_FILE}},
        {ISSUER: {"jku_allowlist": ["https://sandbox.cds-hooks.org/.well-known/jwks.json"]}},
        {SANDBOX_ISSUER: {"jwks_file": "/etc/site/jwks.json"}},
    ],
)
def test_production_refuses_the_sandbox_under_any_name(issuers):
    with pytest.raises(ConfigError, match="sandbox"):
        make_config(**PRODUCTION, TRUSTED_ISSUERS=issuers)


def test_production_refuses_a_copy_of_the_sandbox_key(tmp_path):
    copied = tmp_path / "ehr-jwks.json"
    copied.write_text(Path(SANDBOX_JWKS_FILE).read_text())
    issuers = {ISSUER: {"jwks_file": str(copied)}}
    # Refused by the settings validation, in the master (issue 24: not in every worker).
    with pytest.raises(ConfigError, match=r"jwks_file '.*ehr-jwks.json' holds the public sandbox"):
        make_config(**PRODUCTION, TRUSTED_ISSUERS=issuers)
    # And still by the authenticator, should settings ever reach it unvalidated.
    config = make_config(TRUSTED_ISSUERS=issuers)
    with pytest.raises(ConfigError, match="sandbox"):
        ClientAuthenticator(replace(config, env="production"), InMemoryReplayCache())


def test_production_requires_tokens_and_the_public_base_url(pinned_jwks_file):
    issuers = {ISSUER: {"jwks_file": pinned_jwks_file}}
    assert make_config(**PRODUCTION, TRUSTED_ISSUERS=issuers).requires_token
    with pytest.raises(ConfigError, match="AUTH_REQUIRED"):
        make_config(**PRODUCTION, TRUSTED_ISSUERS=issuers, AUTH_REQUIRED=False)
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        make_config(**{**PRODUCTION, "PUBLIC_BASE_URL": ""}, TRUSTED_ISSUERS=issuers)
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        make_config(
            **{**PRODUCTION, "PUBLIC_BASE_URL": "http://cds.example.org"}, TRUSTED_ISSUERS=issuers
        )


@pytest.mark.parametrize(
    "overrides",
    [
        {"JWT_ALGORITHMS": ["ES384", "HS256"]},
        {"JWT_ALGORITHMS": ["none"]},
        {"JWT_ALGORITHMS": []},
        {"JWT_LEEWAY_SECONDS": -1},
        {"JWT_MAX_LIFETIME_SECONDS": 0},
        {"REDIS_URL": "http://127.0.0.1:6379"},
        {"AUTH_REQUIRED": "yes"},
        {"TRUSTED_ISSUERS": {ISSUER: {}}},
        {"TRUSTED_ISSUERS": {ISSUER: {"jwks_url": "ftp://ehr.example.com/jwks"}}},
        {"TRUSTED_ISSUERS": {ISSUER: {"jku_allowlist": "https://ehr.example.com/jwks"}}},
        {"TRUSTED_ISSUERS": {ISSUER: {"jwks_file": "x.json", "tenants": "hospital-a"}}},
        {"TRUSTED_ISSUERS": {ISSUER: {"jwks_file": "x.json", "keys": []}}},
    ],
)
def test_invalid_auth_settings_are_refused(overrides):
    with pytest.raises(ConfigError):
        make_config(**overrides)


def test_an_unreadable_jwks_file_stops_start_up(tmp_path):
    """Refused by the settings validation (issue 13: not a worker traceback at first use)."""
    with pytest.raises(ConfigError, match=r"jwks_file: '.*missing.json' is not a readable file"):
        make_config(TRUSTED_ISSUERS={ISSUER: {"jwks_file": str(tmp_path / "missing.json")}})


def test_development_defaults_trust_the_packaged_sandbox_key(es384_key):
    config = make_config(PUBLIC_BASE_URL=BASE_URL)
    authenticator = ClientAuthenticator(config, InMemoryReplayCache())
    assert not config.requires_token

    # Our own key cannot pass for the sandbox's: the issuer is trusted, the signature is not.
    forged = es384_key.sign(
        {"iss": SANDBOX_ISSUER},
        kid=SANDBOX_KID,
        jku="https://sandbox.cds-hooks.org/.well-known/jwks.json",
    )
    with pytest.raises(AuthenticationError, match="invalid signature"):
        authenticator.authenticate(f"Bearer {forged}", SERVICE_URL)


def test_trusted_issuers_from_the_environment(monkeypatch, pinned_jwks_file):
    issuers = {ISSUER: {"jwks_file": pinned_jwks_file, "tenants": ["hospital-a"]}}
    monkeypatch.setenv("CDS_TRUSTED_ISSUERS", json.dumps(issuers))
    monkeypatch.setenv("CDS_JWT_LEEWAY_SECONDS", "30")

    config = load_config()

    assert config.trusted_issuers == issuers
    assert config.jwt_leeway_seconds == 30
