"""ClientAuthenticator with pinned keys: what a valid client token looks like, and each way a
forged, stale or misdirected token is refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.security import (
    AuthenticationError,
    ClientAuthenticator,
    InMemoryReplayCache,
    VerifiedClient,
)
from cds_service.security.audience import expected_audiences
from tests.support.jwt_clients import (
    BASE_URL,
    ISSUER,
    NOW,
    SERVICE_URL,
    FakeClock,
    SigningKey,
    make_config,
)


@pytest.fixture
def authenticator(pinned_config: dict[str, Any], clock: FakeClock) -> ClientAuthenticator:
    return ClientAuthenticator(pinned_config, InMemoryReplayCache(), clock=clock)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rejection(
    authenticator: ClientAuthenticator, header: str | None, audience: str | list[str] = SERVICE_URL
) -> str:
    with pytest.raises(AuthenticationError) as raised:
        authenticator.authenticate(header, audience)
    return raised.value.reason


@pytest.mark.parametrize("key_name", ["es384_key", "rs384_key"])
def test_valid_token_is_accepted(authenticator, request, key_name):
    key: SigningKey = request.getfixturevalue(key_name)
    token = key.sign({"jti": "jti-1", "tenant": "hospital-a"})

    client = authenticator.authenticate(bearer(token), SERVICE_URL)

    assert client == VerifiedClient(issuer=ISSUER, jti="jti-1", tenant="hospital-a")


def test_aud_may_be_an_array_and_differ_by_trailing_slash_and_default_port(
    authenticator, es384_key
):
    token = es384_key.sign(
        {
            "aud": [
                "https://other.example",
                "https://CDS.example.org:443/cds-services/leukopenia-patient-view/",
            ]
        }
    )

    assert authenticator.authenticate(bearer(token), SERVICE_URL).issuer == ISSUER


def test_feedback_accepts_the_feedback_and_the_service_url(authenticator, es384_key):
    feedback = expected_audiences(BASE_URL, "/cds-services/leukopenia-patient-view/feedback")
    for aud in (SERVICE_URL + "/feedback", SERVICE_URL):
        authenticator.authenticate(bearer(es384_key.sign({"aud": aud})), feedback)


def test_discovery_audience_is_the_discovery_url(authenticator, es384_key):
    discovery = expected_audiences(BASE_URL + "/", "/cds-services")
    assert discovery == [f"{BASE_URL}/cds-services"]
    reason = rejection(authenticator, bearer(es384_key.sign()), discovery)
    assert reason == "aud is not this endpoint"


def test_alg_none_is_rejected(authenticator):
    header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": "ec-key-1"}).encode())
    payload = b64url(
        json.dumps(
            {"iss": ISSUER, "aud": SERVICE_URL, "iat": NOW, "exp": NOW + 300, "jti": "x"}
        ).encode()
    )
    assert rejection(authenticator, bearer(f"{header}.{payload}.")) == "alg not allowed"


def test_hs256_signed_with_the_public_key_as_secret_is_rejected(authenticator, rs384_key):
    public_pem = rs384_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # PyJWT refuses to HMAC-sign with a PEM key, so sign by hand as an attacker would.
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-key-1"}).encode())
    payload = b64url(
        json.dumps(
            {"iss": ISSUER, "aud": SERVICE_URL, "iat": NOW, "exp": NOW + 300, "jti": "x"}
        ).encode()
    )
    signature = jwt.get_algorithm_by_name("HS256").sign(f"{header}.{payload}".encode(), public_pem)
    token = f"{header}.{payload}.{b64url(signature)}"
    assert rejection(authenticator, bearer(token)) == "alg not allowed"


def test_alg_from_the_allowlist_must_fit_the_key(authenticator, es384_key):
    # An ES256 token naming the client's P-384 key, which is only good for ES384.
    p256_key = SigningKey(ec.generate_private_key(ec.SECP256R1()), es384_key.kid, "ES256")
    assert rejection(authenticator, bearer(p256_key.sign())) == "key does not match alg"


@pytest.mark.parametrize(("alg", "curve"), [("ES256", ec.SECP256R1()), ("RS384", None)])
def test_a_jwk_without_alg_only_verifies_algs_of_its_type_and_curve(
    tmp_path, clock, es384_key, alg, curve
):
    """A JWKS may omit `alg`: the P-384 key must still not verify ES256 or RS384 tokens."""
    jwks_file = tmp_path / "jwks.json"
    public_jwk = {k: v for k, v in es384_key.public_jwk.items() if k != "alg"}
    jwks_file.write_text(json.dumps({"keys": [public_jwk]}))
    config = make_config(TRUSTED_ISSUERS={ISSUER: {"jwks_file": str(jwks_file)}})
    authenticator = ClientAuthenticator(config, InMemoryReplayCache(), clock=clock)
    private_key = ec.generate_private_key(curve) if curve else rsa.generate_private_key(65537, 2048)
    attacker = SigningKey(private_key, es384_key.kid, alg)

    assert rejection(authenticator, bearer(attacker.sign())) == "invalid signature or key"
    assert authenticator.authenticate(bearer(es384_key.sign()), SERVICE_URL)


def test_wrong_audience_is_rejected(authenticator, es384_key):
    token = es384_key.sign({"aud": "https://cds.example.org/cds-services/another-service"})
    assert rejection(authenticator, bearer(token)) == "aud is not this endpoint"


def test_expired_token_is_rejected_after_the_leeway(authenticator, es384_key, clock):
    token = es384_key.sign()
    clock.now = NOW + 300 + 61
    assert rejection(authenticator, bearer(token)) == "expired"


def test_expiry_within_the_leeway_is_tolerated(authenticator, es384_key, clock):
    token = es384_key.sign()
    clock.now = NOW + 300 + 59
    assert authenticator.authenticate(bearer(token), SERVICE_URL).issuer == ISSUER


def test_iat_far_in_the_future_is_rejected(authenticator, es384_key):
    token = es384_key.sign({"iat": int(NOW) + 600, "exp": int(NOW) + 900})
    assert rejection(authenticator, bearer(token)) == "iat in the future"


def test_nbf_in_the_future_is_rejected(authenticator, es384_key):
    token = es384_key.sign({"nbf": int(NOW) + 120})
    assert rejection(authenticator, bearer(token)) == "not yet valid (nbf)"


def test_lifetime_longer_than_allowed_is_rejected(authenticator, es384_key):
    token = es384_key.sign({"exp": int(NOW) + 3601})
    assert rejection(authenticator, bearer(token)).startswith("lifetime")


@pytest.mark.parametrize("missing", ["exp", "iat", "jti"])
def test_required_claims_must_be_present(authenticator, es384_key, missing):
    claims = jwt.decode(es384_key.sign(), options={"verify_signature": False})
    del claims[missing]
    token = jwt.encode(
        claims,
        es384_key.private_key,
        algorithm="ES384",
        headers={"kid": es384_key.kid, "typ": "JWT"},
    )
    assert rejection(authenticator, bearer(token)) in (
        "exp or iat missing, or a time claim not a number",
        "missing or invalid jti",
    )


def test_replayed_jti_is_rejected(authenticator, es384_key):
    token = es384_key.sign()
    authenticator.authenticate(bearer(token), SERVICE_URL)
    assert rejection(authenticator, bearer(token)) == "replayed jti"


def test_a_rejected_token_does_not_use_up_its_jti(authenticator, es384_key):
    wrong_aud = es384_key.sign({"jti": "same", "aud": "https://elsewhere.example"})
    rejection(authenticator, bearer(wrong_aud))
    assert authenticator.authenticate(bearer(es384_key.sign({"jti": "same"})), SERVICE_URL)


def test_unknown_kid_is_rejected(authenticator, es384_key):
    assert rejection(authenticator, bearer(es384_key.sign(kid="rotated-away"))) == "unknown kid"


def test_tampered_payload_is_rejected(authenticator, es384_key):
    header, _, signature = es384_key.sign().split(".")
    forged = {
        "iss": ISSUER,
        "aud": SERVICE_URL,
        "iat": NOW,
        "exp": NOW + 300,
        "jti": "forged",
        "tenant": "another-hospital",
    }
    token = f"{header}.{b64url(json.dumps(forged).encode())}.{signature}"
    assert rejection(authenticator, bearer(token)) == "invalid signature or key"


def test_token_signed_by_an_unpublished_key_is_rejected(authenticator, es384_key):
    impostor = SigningKey(ec.generate_private_key(ec.SECP384R1()), es384_key.kid, "ES384")
    assert rejection(authenticator, bearer(impostor.sign())) == "invalid signature or key"


def test_untrusted_issuer_is_rejected(authenticator, es384_key):
    token = es384_key.sign({"iss": "https://evil.example"})
    assert rejection(authenticator, bearer(token)) == "untrusted issuer"


def test_jku_not_on_the_allowlist_is_rejected(authenticator, es384_key):
    token = es384_key.sign(jku="https://evil.example/jwks.json")
    assert rejection(authenticator, bearer(token)) == "jku not allowlisted"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer a b",
        "Bearer not-a-jwt",
        "Bearer e30.e30.",
        "Bearer " + "a" * 20000,
    ],
)
def test_missing_or_malformed_token_is_rejected(authenticator, header):
    rejection(authenticator, header)


@pytest.mark.parametrize("typ", [None, "at+jwt"])
def test_typ_must_be_jwt(authenticator, es384_key, typ):
    assert rejection(authenticator, bearer(es384_key.sign(typ=typ))) == "typ is not JWT"


def test_kid_is_required(authenticator, es384_key):
    assert rejection(authenticator, bearer(es384_key.sign(kid=None))) == "no kid"


def test_tenant_allowlist(pinned_jwks_file, clock, es384_key):
    config = make_config(
        TRUSTED_ISSUERS={ISSUER: {"jwks_file": pinned_jwks_file, "tenants": ["hospital-a"]}}
    )
    authenticator = ClientAuthenticator(config, InMemoryReplayCache(), clock=clock)

    assert (
        authenticator.authenticate(
            bearer(es384_key.sign({"tenant": "hospital-a"})), SERVICE_URL
        ).tenant
        == "hospital-a"
    )
    for other_tenant in ({"tenant": "hospital-b"}, {}):
        reason = rejection(authenticator, bearer(es384_key.sign(other_tenant)))
        assert reason == "tenant not allowed for this issuer"
