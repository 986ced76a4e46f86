"""Keys fetched from an allowlisted JWKS URL: cached, refreshed on key rotation, rate-limited,
and never fetched from a URL the settings do not allow."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.security import AuthenticationError, ClientAuthenticator, InMemoryReplayCache
from tests.support.jwt_clients import ISSUER, JWKS_URL, SERVICE_URL, SigningKey, jwks, make_config


@pytest.fixture
def fetching_config():
    """No pinned file: keys come from the token's allowlisted jku."""
    return make_config(
        TRUSTED_ISSUERS={ISSUER: {"jku_allowlist": [JWKS_URL]}},
        JWKS_REFRESH_MIN_INTERVAL_SECONDS=60,
        JWKS_CACHE_SECONDS=3600,
    )


@pytest.fixture
def authenticator(fetching_config, clock):
    return ClientAuthenticator(fetching_config, InMemoryReplayCache(), requests.Session(), clock)


@pytest.fixture
def ehr():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def fetches(ehr: responses.RequestsMock) -> int:
    return sum(call.request.url == JWKS_URL for call in ehr.calls)


def test_keys_from_the_allowlisted_jku_are_fetched_once_for_two_tokens(
    authenticator, ehr, es384_key
):
    ehr.get(JWKS_URL, json=jwks(es384_key))

    for _ in range(2):
        client = authenticator.authenticate(f"Bearer {es384_key.sign(jku=JWKS_URL)}", SERVICE_URL)
        assert client.issuer == ISSUER

    assert fetches(ehr) == 1


def test_cached_keys_are_refetched_after_the_cache_time(authenticator, ehr, es384_key, clock):
    ehr.get(JWKS_URL, json=jwks(es384_key))
    authenticator.authenticate(f"Bearer {es384_key.sign(jku=JWKS_URL)}", SERVICE_URL)

    clock.now += 3600
    token = es384_key.sign({"iat": int(clock.now), "exp": int(clock.now) + 300}, jku=JWKS_URL)
    authenticator.authenticate(f"Bearer {token}", SERVICE_URL)

    assert fetches(ehr) == 2


def test_key_rotation_an_unknown_kid_triggers_one_refetch(
    authenticator, ehr, es384_key, rs384_key, clock
):
    ehr.get(JWKS_URL, json=jwks(es384_key))
    authenticator.authenticate(f"Bearer {es384_key.sign(jku=JWKS_URL)}", SERVICE_URL)
    # The EHR rotates to its RSA key; the refresh is allowed once the minimum interval passed.
    ehr.replace(responses.GET, JWKS_URL, json=jwks(rs384_key))
    clock.now += 61

    token = rs384_key.sign({"iat": int(clock.now), "exp": int(clock.now) + 300}, jku=JWKS_URL)
    assert authenticator.authenticate(f"Bearer {token}", SERVICE_URL).issuer == ISSUER
    assert fetches(ehr) == 2


def test_unknown_kid_is_rejected_after_one_refresh_and_refreshes_are_rate_limited(
    authenticator, ehr, es384_key, clock
):
    ehr.get(JWKS_URL, json=jwks(es384_key))
    authenticator.authenticate(f"Bearer {es384_key.sign(jku=JWKS_URL)}", SERVICE_URL)
    clock.now += 61

    for kid in ("made-up-1", "made-up-2", "made-up-3"):
        with pytest.raises(AuthenticationError, match="unknown kid"):
            authenticator.authenticate(
                f"Bearer {es384_key.sign(jku=JWKS_URL, kid=kid)}", SERVICE_URL
            )

    assert fetches(ehr) == 2  # the first fetch, then one refresh for all three made-up kids


def test_jku_not_allowlisted_is_rejected_without_any_request(authenticator, ehr, es384_key):
    evil = "https://evil.example/jwks.json"
    ehr.get(evil, json=jwks(es384_key))

    with pytest.raises(AuthenticationError, match="jku not allowlisted"):
        authenticator.authenticate(f"Bearer {es384_key.sign(jku=evil)}", SERVICE_URL)

    assert len(ehr.calls) == 0


def test_configured_jwks_url_is_used_when_the_token_has_no_jku(clock, ehr, es384_key):
    config = make_config(TRUSTED_ISSUERS={ISSUER: {"jwks_url": JWKS_URL}})
    authenticator = ClientAuthenticator(config, InMemoryReplayCache(), requests.Session(), clock)
    ehr.get(JWKS_URL, json=jwks(es384_key))

    assert authenticator.authenticate(f"Bearer {es384_key.sign()}", SERVICE_URL).issuer == ISSUER
    assert fetches(ehr) == 1


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 500, "json": {}},
        {"status": 302, "headers": {"Location": "https://evil.example/jwks.json"}},
        {"body": "not json"},
        {"json": {"keys": "not a list"}},
        # What an unpatched ssl under gevent raised for every HTTPS fetch (issue 22): a 500.
        {"body": RecursionError("maximum recursion depth exceeded")},
    ],
)
def test_a_failed_fetch_rejects_the_token(authenticator, ehr, es384_key, answer):
    ehr.get(JWKS_URL, **answer)

    with pytest.raises(AuthenticationError, match="unknown kid"):
        authenticator.authenticate(f"Bearer {es384_key.sign(jku=JWKS_URL)}", SERVICE_URL)

    assert [call.request.url for call in ehr.calls] == [JWKS_URL]  # redirect not followed


def test_an_oversized_jwks_is_not_read(clock, ehr, es384_key):
    config = make_config(
        TRUSTED_ISSUERS={ISSUER: {"jku_allowlist": [JWKS_URL]}}, JWKS_MAX_BYTES=1000
    )
    authenticator = ClientAuthenticator(config, InMemoryReplayCache(), requests.Session(), clock)
    padded = {**jwks(es384_key), "padding": "x" * 2000}
    ehr.get(JWKS_URL, body=json.dumps(padded))

    with pytest.raises(AuthenticationError, match="unknown kid"):
        authenticator.authenticate(f"Bearer {es384_key.sign(jku=JWKS_URL)}", SERVICE_URL)


def test_stale_keys_stay_usable_when_a_refresh_fails(authenticator, ehr, es384_key, clock):
    ehr.get(JWKS_URL, json=jwks(es384_key))
    authenticator.authenticate(f"Bearer {es384_key.sign(jku=JWKS_URL)}", SERVICE_URL)
    ehr.replace(responses.GET, JWKS_URL, body=requests.ConnectionError("EHR down"))
    clock.now += 3600

    token = es384_key.sign({"iat": int(clock.now), "exp": int(clock.now) + 300}, jku=JWKS_URL)
    assert authenticator.authenticate(f"Bearer {token}", SERVICE_URL).issuer == ISSUER
    assert fetches(ehr) == 2


def test_unusable_keys_in_a_jwks_are_skipped(authenticator, ehr, es384_key):
    encryption_key = SigningKey(ec.generate_private_key(ec.SECP384R1()), "enc", "ES384")
    ehr.get(
        JWKS_URL,
        json={
            "keys": [
                {**encryption_key.public_jwk, "use": "enc"},
                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
                "not a key",
                es384_key.public_jwk,
            ]
        },
    )

    assert authenticator.authenticate(f"Bearer {es384_key.sign(jku=JWKS_URL)}", SERVICE_URL)
    with pytest.raises(AuthenticationError, match="unknown kid"):
        authenticator.authenticate(f"Bearer {encryption_key.sign(jku=JWKS_URL)}", SERVICE_URL)
