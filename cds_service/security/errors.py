"""Why a CDS client call was not let through. Reasons are fixed phrases for the log: they
never quote the token or any other value the caller chose."""

from __future__ import annotations


class AuthenticationError(Exception):
    """The call carries no acceptable JWT (HTTP 401)."""

    def __init__(self, reason: str, issuer: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        # Set only once the issuer is known to be trusted, so it is safe to log.
        self.issuer = issuer


class AuthenticationUnavailable(Exception):
    """The token could not be checked because our own replay store failed (HTTP 503)."""
