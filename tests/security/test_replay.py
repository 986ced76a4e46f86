"""The jti replay caches: in memory for one process, Redis shared by several workers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from cds_service.security import (
    AuthenticationError,
    AuthenticationUnavailable,
    ClientAuthenticator,
    InMemoryReplayCache,
    RedisReplayCache,
    ReplayCache,
    replay_cache_from_url,
)
from cds_service.security.replay import REDIS_CLIENT_NAME, replay_key
from tests.support.jwt_clients import ISSUER, NOW, SERVICE_URL
from tests.support.redis_server import REDIS_URL, connections_named, redis_answers


@pytest.fixture(scope="module")
def redis_url() -> str:
    if not redis_answers():
        pytest.skip("no Redis on 127.0.0.1:6379")
    return REDIS_URL


@pytest.fixture
def worker_caches(redis_url: str) -> Iterator[tuple[ReplayCache, ReplayCache]]:
    """Two workers' caches on the one Redis, closed after the test."""
    caches = (replay_cache_from_url(redis_url), replay_cache_from_url(redis_url))
    yield caches
    for cache in caches:
        cache.close()


def test_in_memory_cache_rejects_a_second_use_and_forgets_after_expiry():
    cache = InMemoryReplayCache()

    assert cache.remember(ISSUER, "jti-1", expires_at=NOW + 10, now=NOW)
    assert not cache.remember(ISSUER, "jti-1", expires_at=NOW + 10, now=NOW + 5)
    assert cache.remember("https://other-ehr.example", "jti-1", expires_at=NOW + 10, now=NOW)
    assert cache.remember(ISSUER, "jti-1", expires_at=NOW + 30, now=NOW + 10)


def test_redis_cache_is_shared_between_workers(worker_caches):
    jti = str(uuid.uuid4())
    worker_a, worker_b = worker_caches

    assert isinstance(worker_a, RedisReplayCache)
    assert worker_a.remember(ISSUER, jti, expires_at=NOW + 300, now=NOW)
    assert not worker_b.remember(ISSUER, jti, expires_at=NOW + 300, now=NOW)


def test_redis_entries_expire_with_the_token(redis_url):
    jti = str(uuid.uuid4())
    with redis.Redis.from_url(redis_url) as client:
        RedisReplayCache(client).remember(ISSUER, jti, expires_at=NOW + 120, now=NOW)

        assert 0 < client.ttl(replay_key(ISSUER, jti)) <= 120


def test_a_closed_cache_leaves_no_connection_to_redis(redis_url):
    # An app made for a test or a command closes its runtime; its Redis socket must go with
    # it, not wait for the garbage collector (which warns about the unclosed socket).
    before = connections_named(REDIS_CLIENT_NAME)
    cache = replay_cache_from_url(redis_url)
    cache.check_reachable()
    assert connections_named(REDIS_CLIENT_NAME) == before + 1

    cache.close()

    assert connections_named(REDIS_CLIENT_NAME) == before


def test_token_replayed_to_another_worker_is_rejected(
    redis_url, worker_caches, pinned_config, clock, es384_key
):
    config = replace(pinned_config, redis_url=redis_url)
    worker_a, worker_b = (
        ClientAuthenticator(config, cache, clock=clock) for cache in worker_caches
    )
    token = f"Bearer {es384_key.sign()}"

    worker_a.authenticate(token, SERVICE_URL)
    with pytest.raises(AuthenticationError, match="replayed jti"):
        worker_b.authenticate(token, SERVICE_URL)


def test_unreachable_redis_is_an_outage_not_a_pass():
    cache = replay_cache_from_url("redis://127.0.0.1:1/0")
    with pytest.raises(AuthenticationUnavailable):
        cache.remember(ISSUER, "jti", expires_at=NOW + 60, now=NOW)
