"""Public keys of the trusted CDS clients, by `kid`.

Keys come from a pinned JWKS file, or from a JWKS URL that the settings allowlist for the
issuer. Fetched sets are cached for a while and refetched when a token names a `kid` they lack
(key rotation); fetches of one URL are rate-limited so that tokens with made-up `kid`s cannot
turn this service into a flood of requests to the client.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests

from ..jwk_sets import JwkDict, holds_a_key_of, load_jwks_file, parse_jwks
from .errors import AuthenticationError

logger = logging.getLogger(__name__)

__all__ = ["JwkDict", "KeyStore", "holds_a_key_of", "load_jwks_file", "parse_jwks"]


@dataclass(frozen=True)
class _FetchedJwks:
    keys: dict[str, JwkDict]
    fetched_at: float


class KeyStore:
    def __init__(
        self,
        pinned: Mapping[str, dict[str, JwkDict]],
        *,
        http_session: requests.Session,
        clock: Callable[[], float],
        cache_seconds: float,
        refresh_min_interval: float,
        fetch_timeout: float,
        max_bytes: int,
    ) -> None:
        self._pinned = pinned  # by issuer
        self._http = http_session
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._refresh_min_interval = refresh_min_interval
        self._fetch_timeout = fetch_timeout
        self._max_bytes = max_bytes
        self._fetched: dict[str, _FetchedJwks] = {}  # by URL
        self._last_fetch_attempt: dict[str, float] = {}  # by URL
        # One fetch at a time: concurrent tokens with a new kid wait for it instead of each
        # fetching again.
        self._lock = threading.Lock()

    def has_pinned_keys(self, issuer: str) -> bool:
        return issuer in self._pinned

    def pinned_key(self, issuer: str, kid: str) -> JwkDict:
        jwk = self._pinned[issuer].get(kid)
        if jwk is None:
            raise AuthenticationError("unknown kid", issuer)
        return jwk

    def fetched_key(self, issuer: str, kid: str, url: str) -> JwkDict:
        """The key `kid` from the JWKS at `url`, which the caller has checked is allowlisted."""
        with self._lock:
            now = self._clock()
            cached = self._fetched.get(url)
            stale = cached is None or now - cached.fetched_at >= self._cache_seconds
            if (stale or kid not in cached.keys) and self._may_fetch(url, now):
                cached = self._fetch(url, now) or cached
        if cached is None or kid not in cached.keys:
            raise AuthenticationError("unknown kid", issuer)
        return cached.keys[kid]

    def _may_fetch(self, url: str, now: float) -> bool:
        last = self._last_fetch_attempt.get(url)
        if last is not None and now - last < self._refresh_min_interval:
            return False
        self._last_fetch_attempt[url] = now
        return True

    def _fetch(self, url: str, now: float) -> _FetchedJwks | None:
        """The JWKS at `url`, or None (logged) when it cannot be had; stale keys then stay."""
        try:
            # No redirects: an allowlisted URL must not be able to send us somewhere else.
            with self._http.get(
                url,
                timeout=self._fetch_timeout,
                stream=True,
                allow_redirects=False,
                headers={"Accept": "application/json"},
            ) as response:
                if response.status_code != 200:
                    raise ValueError(f"HTTP status {response.status_code}")
                body = bytearray()
                for chunk in response.iter_content(chunk_size=8192):
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise ValueError(f"larger than {self._max_bytes} bytes")
            fetched = _FetchedJwks(parse_jwks(json.loads(body)), now)
        except Exception as error:  # noqa: BLE001
            # Whatever stops us from reading the keys is a failed fetch (the token is then
            # refused with 401), never a 500: a network error, a bad document, and also a
            # broken TLS stack (RecursionError under an unpatched ssl, gevent issue 1016).
            logger.warning(
                "JWKS fetch failed: %s",
                type(error).__name__,
                extra={"event": "jwks_fetch_failed", "jwks_url": url, "error": str(error)},
            )
            return None
        self._fetched[url] = fetched
        logger.info(
            "JWKS fetched",
            extra={"event": "jwks_fetched", "jwks_url": url, "kids": sorted(fetched.keys)},
        )
        return fetched
