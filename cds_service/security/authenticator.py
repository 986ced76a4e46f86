"""Verification of the JWT a CDS client signs for each call (CDS Hooks 2.0
§trusting-cds-clients and its best practices), independent of the web framework."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import requests

from ..config import ConfigError, Settings
from ..trusted_issuers import SANDBOX_JWKS_FILE
from .audience import normalise_url
from .errors import AuthenticationError
from .jwks import JwkDict, KeyStore, holds_a_key_of, load_jwks_file
from .replay import ReplayCache

# A real client token is well under 2 kB; refuse to parse anything absurdly large.
MAX_TOKEN_LENGTH = 16 * 1024
MAX_JTI_LENGTH = 256


@dataclass(frozen=True)
class VerifiedClient:
    """Who called, as far as a valid token says; safe to log (no patient data, no token)."""

    issuer: str
    jti: str
    tenant: str | None = None


class ClientAuthenticator:
    def __init__(
        self,
        settings: Settings,
        replay_cache: ReplayCache,
        http_session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuers = settings.trusted_issuers
        self._algorithms: list[str] = list(settings.jwt_algorithms)
        self._leeway: float = settings.jwt_leeway_seconds
        self._max_lifetime: float = settings.jwt_max_lifetime_seconds
        self._replay_cache = replay_cache
        # Readiness asks it: every call that carries a JWT needs the replay cache.
        self.check_replay_cache = replay_cache.check_reachable
        self._clock = clock
        pinned = {
            issuer: load_jwks_file(entry["jwks_file"])
            for issuer, entry in self._issuers.items()
            if entry.get("jwks_file")
        }
        if not settings.development:
            _refuse_sandbox_key(pinned)
        self._keys = KeyStore(
            pinned,
            http_session=http_session or requests.Session(),
            clock=clock,
            cache_seconds=settings.jwks_cache_seconds,
            refresh_min_interval=settings.jwks_refresh_min_interval_seconds,
            fetch_timeout=settings.jwks_fetch_timeout_seconds,
            max_bytes=settings.jwks_max_bytes,
        )

    def close(self) -> None:
        """Release the replay cache's connections."""
        self._replay_cache.close()

    def authenticate(
        self, authorization_header: str | None, audience: str | Iterable[str]
    ) -> VerifiedClient:
        """The verified caller of an endpoint whose accepted `aud` values are `audience`.

        Raises AuthenticationError, or AuthenticationUnavailable when the replay cache fails.
        """
        token = _bearer_token(authorization_header)
        header = _checked_header(token, self._algorithms)
        issuer = _unverified_issuer(token)
        settings = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if settings is None:
            raise AuthenticationError("untrusted issuer")
        jwk = self._find_key(issuer, settings, header)
        claims = _verified_claims(token, jwk, header["alg"], issuer)
        self._check_times(claims, issuer)
        _check_audience(claims.get("aud"), audience, issuer)
        tenant = _checked_tenant(claims, settings, issuer)
        jti = claims.get("jti")
        # Printable only: a lone UTF-16 surrogate (valid JSON escape) cannot even be hashed.
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH or not jti.isprintable():
            raise AuthenticationError("missing or invalid jti", issuer)
        # Checked last, so a token rejected for another reason does not use up its jti.
        remember_until = claims["exp"] + self._leeway
        if not self._replay_cache.remember(issuer, jti, remember_until, self._clock()):
            raise AuthenticationError("replayed jti", issuer)
        return VerifiedClient(issuer=issuer, jti=jti, tenant=tenant)

    def _find_key(
        self, issuer: str, settings: Mapping[str, Any], header: Mapping[str, Any]
    ) -> JwkDict:
        jku = header.get("jku")
        jwks_url = settings.get("jwks_url") or None
        if jku is not None and jku not in [*(settings.get("jku_allowlist") or []), jwks_url]:
            # Never fetched: an arbitrary jku would let anyone supply their own keys (and make
            # this service request any URL).
            raise AuthenticationError("jku not allowlisted", issuer)
        if self._keys.has_pinned_keys(issuer):
            return self._keys.pinned_key(issuer, header["kid"])
        url = jku or jwks_url
        if url is None:
            raise AuthenticationError("no jku and no configured JWKS URL", issuer)
        return self._keys.fetched_key(issuer, header["kid"], url)

    def _check_times(self, claims: Mapping[str, Any], issuer: str) -> None:
        now = self._clock()
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)
        if not all(_is_number(value) for value in (exp, iat, nbf)):
            raise AuthenticationError("exp or iat missing, or a time claim not a number", issuer)
        if now > exp + self._leeway:
            raise AuthenticationError("expired", issuer)
        if iat > now + self._leeway:
            raise AuthenticationError("iat in the future", issuer)
        if nbf > now + self._leeway:
            raise AuthenticationError("not yet valid (nbf)", issuer)
        if not 0 < exp - iat <= self._max_lifetime:
            raise AuthenticationError("lifetime (exp - iat) too long or not positive", issuer)


def _refuse_sandbox_key(pinned: Mapping[str, dict[str, JwkDict]]) -> None:
    """Its private key is published, so in production it must not vouch for anyone, even
    copied into another issuer's JWKS file."""
    sandbox = load_jwks_file(SANDBOX_JWKS_FILE)
    for issuer, keys in pinned.items():
        if holds_a_key_of(keys, sandbox):
            raise ConfigError(f"CDS_TRUSTED_ISSUERS[{issuer!r}] pins the public sandbox's key")


def _bearer_token(authorization_header: str | None) -> str:
    if not authorization_header:
        raise AuthenticationError("no bearer token")
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise AuthenticationError("authorization header is not 'Bearer <JWT>'")
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthenticationError("token too long")
    return token


def _checked_header(token: str, algorithms: list[str]) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthenticationError("malformed token") from None
    if header.get("alg") not in algorithms:
        raise AuthenticationError("alg not allowed")
    if not isinstance(header.get("typ"), str) or header["typ"].upper() != "JWT":
        raise AuthenticationError("typ is not JWT")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise AuthenticationError("no kid")
    if "jku" in header and not isinstance(header["jku"], str):
        raise AuthenticationError("jku is not a string")
    return header


def _unverified_issuer(token: str) -> Any:
    """The claimed `iss`, read only to choose which keys to verify with."""
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        raise AuthenticationError("malformed token") from None


def _verified_claims(token: str, jwk: JwkDict, alg: str, issuer: str) -> dict[str, Any]:
    if jwk.get("alg", alg) != alg:
        raise AuthenticationError("key does not match alg", issuer)
    try:
        # PyJWK also refuses a key of the wrong type or curve for `alg`.
        key = jwt.PyJWK(jwk, algorithm=alg)
        payload = jwt.PyJWS().decode(
            token, key, algorithms=[alg], options={"enforce_minimum_key_length": True}
        )
        claims = json.loads(payload)
    except (jwt.PyJWTError, ValueError):
        raise AuthenticationError("invalid signature or key", issuer) from None
    if not isinstance(claims, dict):
        raise AuthenticationError("payload is not a JSON object", issuer)
    return claims


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_audience(aud: Any, accepted: str | Iterable[str], issuer: str) -> None:
    claimed = [aud] if isinstance(aud, str) else aud
    if not isinstance(claimed, list) or not all(isinstance(value, str) for value in claimed):
        raise AuthenticationError("aud missing or not a string or array of strings", issuer)
    accepted_urls = {
        normalise_url(url) for url in ([accepted] if isinstance(accepted, str) else accepted)
    }
    if not accepted_urls & {normalise_url(url) for url in claimed}:
        raise AuthenticationError("aud is not this endpoint", issuer)


def _checked_tenant(
    claims: Mapping[str, Any], settings: Mapping[str, Any], issuer: str
) -> str | None:
    tenant = claims.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise AuthenticationError("tenant is not a string", issuer)
    allowed = settings.get("tenants")
    if allowed is not None and tenant not in allowed:
        raise AuthenticationError("tenant not allowed for this issuer", issuer)
    return tenant
