"""The machine's Redis (127.0.0.1:6379): whether it answers, and who is connected to it. Every
client made here is closed at once: an open socket left to the garbage collector is a
ResourceWarning, an error in this suite, in whichever later test happens to collect it."""

from __future__ import annotations

from functools import cache

import redis

REDIS_URL = "redis://127.0.0.1:6379/0"


@cache
def redis_answers() -> bool:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1) as probe:
            probe.ping()
    except redis.RedisError:
        return False
    return True


def connections_named(name: str) -> int:
    """How many connections to the server carry this client name."""
    with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1) as probe:
        return sum(client["name"] == name for client in probe.client_list())
