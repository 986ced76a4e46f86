"""Issue 24: /readyz reflects every dependency a hook call needs. With Redis down every call
carrying a JWT gets 503 (its jti cannot be checked), so the pod must leave the Service too."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.runtime import runtime
from cds_service.security import InMemoryReplayCache, RedisReplayCache
from tests.support.redis_server import REDIS_URL, redis_answers

# A port nothing listens on: connections are refused at once, like a Redis that is down.
NO_REDIS_URL = "redis://127.0.0.1:1/0"


@contextmanager
def _client(tmp_path, redis_url: str) -> Iterator[FlaskClient]:
    app = create_app(
        {
            "ENV": "testing",
            "DATABASE_URL": f"sqlite:///{tmp_path}/cds.sqlite3",
            "REDIS_URL": redis_url,
        }
    )
    try:
        yield app.test_client()
    finally:
        runtime(app).close()


def test_readyz_503_when_the_replay_cache_is_unreachable(tmp_path):
    with _client(tmp_path, NO_REDIS_URL) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "reason": "replay cache unreachable"}


def test_readyz_200_when_redis_answers(tmp_path):
    if not redis_answers():
        pytest.skip("no Redis on 127.0.0.1:6379")
    with _client(tmp_path, REDIS_URL) as client:
        assert client.get("/readyz").status_code == 200


def test_the_caches_say_whether_they_can_be_used():
    InMemoryReplayCache().check_reachable()  # always, in this process
    with pytest.raises(Exception, match="replay cache unavailable"):
        RedisReplayCache.from_url(NO_REDIS_URL).check_reachable()
