"""Flask glue: every call under /cds-services (discovery, services, feedback) passes the
client authenticator before its view runs. CORS preflights carry no token and are let through."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify, request

from ..config import Settings
from .audience import expected_audiences
from .authenticator import ClientAuthenticator
from .errors import AuthenticationError, AuthenticationUnavailable
from .replay import replay_cache_from_url

logger = logging.getLogger(__name__)

SERVICES_ROOT = "/cds-services"


def _is_protected(path: str) -> bool:
    return path == SERVICES_ROOT or path.startswith(SERVICES_ROOT + "/")


def _unauthorized() -> tuple[Response, int, dict[str, str]]:
    # No reason in the answer: it would tell an attacker which check to work around.
    return jsonify({"error": "unauthorized"}), 401, {"WWW-Authenticate": "Bearer"}


def init_app(app: Flask, settings: Settings) -> ClientAuthenticator:
    """Install CDS client authentication on `app` with checked `settings`; the authenticator
    is returned for the app's runtime (readiness asks its replay cache)."""
    authenticator = ClientAuthenticator(settings, replay_cache_from_url(settings.redis_url))
    required = settings.requires_token
    public_base_url = settings.public_base_url
    if not settings.redis_url and not settings.development:
        logger.warning(
            "jti replay cache is in this process only: set CDS_REDIS_URL when running "
            "several workers",
            extra={"event": "replay_cache_in_memory"},
        )
    if not required:
        logger.warning(
            "CDS client authentication is off: calls without a JWT are accepted "
            "(a JWT that is sent is still verified)",
            extra={"event": "auth_not_required"},
        )

    @app.before_request
    def authenticate_cds_client() -> Any:
        # Views read the caller as g.get("cds_client"): None when unauthenticated (development).
        if request.method == "OPTIONS" or not _is_protected(request.path):
            return None
        g.cds_client = None
        authorization = request.headers.get("Authorization")
        if not authorization and not required:
            return None
        audiences = expected_audiences(public_base_url or request.root_url, request.path)
        try:
            g.cds_client = authenticator.authenticate(authorization, audiences)
        except AuthenticationError as error:
            logger.warning(
                "CDS client rejected: %s",
                error.reason,
                extra={"event": "auth_rejected", "reason": error.reason, "iss": error.issuer},
            )
            return _unauthorized()
        except AuthenticationUnavailable:
            logger.exception("CDS client could not be checked", extra={"event": "auth_error"})
            return jsonify({"error": "unavailable"}), 503
        logger.info(
            "CDS client authenticated",
            extra={
                "event": "auth_ok",
                "iss": g.cds_client.issuer,
                "tenant": g.cds_client.tenant,
                "jti": g.cds_client.jti,
            },
        )
        return None

    return authenticator
