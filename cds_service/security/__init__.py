"""Authentication of CDS clients (EHRs) by the JWT they sign for each call."""

from .authenticator import ClientAuthenticator, VerifiedClient
from .errors import AuthenticationError, AuthenticationUnavailable
from .flask_integration import init_app
from .replay import InMemoryReplayCache, RedisReplayCache, ReplayCache, replay_cache_from_url

__all__ = [
    "AuthenticationError",
    "AuthenticationUnavailable",
    "ClientAuthenticator",
    "InMemoryReplayCache",
    "RedisReplayCache",
    "ReplayCache",
    "VerifiedClient",
    "init_app",
    "replay_cache_from_url",
]
