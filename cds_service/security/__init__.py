"""Authentication of CDS clients (EHRs) by the JWT they sign for each call.

`init_app(app, settings)` protects `/cds-services` and everything under it (discovery, services,
feedback); CORS preflights and other paths are left alone. When CDS_AUTH_REQUIRED is in force
(always in production) a call needs a valid token; otherwise (development, testing) a call
without one is let through, but a token that is sent must be valid. Refusals are
401 `{"error": "unauthorized"}` with `WWW-Authenticate: Bearer`; the reason is only logged.
The verification itself is `ClientAuthenticator`, which knows nothing of Flask.
"""

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
