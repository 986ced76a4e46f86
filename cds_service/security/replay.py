"""Replay protection: each `jti` is accepted once while its token could still be valid.

One process can keep them in memory; several workers must share Redis, or a token replayed to
another worker would pass.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import threading
from typing import Protocol

import redis

from .errors import AuthenticationUnavailable

REDIS_CLIENT_NAME = "cds-services"


class ReplayCache(Protocol):
    def remember(self, issuer: str, jti: str, expires_at: float, now: float) -> bool:
        """Record the pair until `expires_at`; False when it was already recorded."""

    def check_reachable(self) -> None:
        """Raise AuthenticationUnavailable when the cache cannot be used (readiness)."""

    def close(self) -> None:
        """Release the connections the cache holds (an app that is done with it)."""


def replay_key(issuer: str, jti: str) -> str:
    # jti is unique per issuer only; hashing bounds the key size whatever the client sends.
    digest = hashlib.sha256(f"{issuer}\n{jti}".encode()).hexdigest()
    return f"cds-services:jti:{digest}"


class InMemoryReplayCache:
    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._by_expiry: list[tuple[float, str]] = []  # heap: forget the oldest first
        self._lock = threading.Lock()

    def remember(self, issuer: str, jti: str, expires_at: float, now: float) -> bool:
        key = replay_key(issuer, jti)
        with self._lock:
            while self._by_expiry and self._by_expiry[0][0] <= now:
                self._seen.discard(heapq.heappop(self._by_expiry)[1])
            if key in self._seen:
                return False
            self._seen.add(key)
            heapq.heappush(self._by_expiry, (expires_at, key))
            return True

    def check_reachable(self) -> None:
        return None  # in this process: always there

    def close(self) -> None:
        return None  # nothing outside this process


class RedisReplayCache:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    @classmethod
    def from_url(cls, url: str) -> RedisReplayCache:
        # Named, so that Redis's CLIENT LIST tells an operator which connections are ours.
        return cls(
            redis.Redis.from_url(
                url, socket_timeout=2, socket_connect_timeout=2, client_name=REDIS_CLIENT_NAME
            )
        )

    def remember(self, issuer: str, jti: str, expires_at: float, now: float) -> bool:
        ttl = max(1, math.ceil(expires_at - now))
        try:
            # SET NX is atomic, so two workers racing on one jti cannot both win.
            return bool(self._client.set(replay_key(issuer, jti), b"1", nx=True, ex=ttl))
        except redis.RedisError as error:
            raise AuthenticationUnavailable("replay cache unavailable") from error

    def check_reachable(self) -> None:
        try:
            self._client.ping()
        except redis.RedisError as error:
            raise AuthenticationUnavailable("replay cache unavailable") from error

    def close(self) -> None:
        self._client.close()


def replay_cache_from_url(redis_url: str) -> ReplayCache:
    return RedisReplayCache.from_url(redis_url) if redis_url else InMemoryReplayCache()
