"""The Flask application, and the composition root: settings, knowledge, services, security,
governance and metrics built and wired together here, once, into the `Runtime` the views read
(runtime.py); every error answered as JSON."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask_cors import CORS
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from cds_service import governance, security
from cds_service.api import blueprint as hooks_blueprint
from cds_service.config import DECLARED, load_config
from cds_service.fhir import validation
from cds_service.ops import metrics
from cds_service.rule_modes import describe
from cds_service.runtime import Runtime, install
from cds_service.services import load_site

log = logging.getLogger("cds_service")


def _json_errors(app: Flask) -> None:
    """Every error is a small JSON object: no HTML pages, no stack traces, no internals."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        messages = {404: "not found", 405: "method not allowed", 413: "request body too large"}
        response = jsonify({"error": messages.get(exc.code or 500, exc.name.lower())})
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response, exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.error("unhandled error", extra={"error_type": type(exc).__name__})
        return jsonify({"error": "internal error"}), 500


class _UnsortedJSONProvider(DefaultJSONProvider):
    sort_keys = False  # keys in the order the service builds them (cards read top-down)


def _is_flask_key(key: str) -> bool:
    # MAX_CONTENT_LENGTH is also a setting of this service: validated as one, then given to Flask.
    return key in Flask.default_config and key not in DECLARED


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _read_rest_of_body(response: Response) -> Response:
    """Read what the handler left of the request body before answering.

    An answer given before the body was read (a refused token, an unknown service, a wrong
    content type) is followed by closing the connection with unread data in it, which the
    kernel turns into a reset: the proxy's upload then fails and the EHR gets nginx's 502
    page instead of this JSON answer (seen 1 in 4 through the shipped nginx). Reading is
    bounded by MAX_CONTENT_LENGTH (request.stream enforces it) and keeps nothing."""
    try:
        while request.stream.read(64 * 1024):
            pass
    except (HTTPException, OSError):
        pass  # too large or the client left: nothing more to protect
    return response


def _measure(app: Flask, running: Runtime) -> None:
    """Metrics count the storage's events and the hook calls per service, and /readyz asks
    each dependency of a hook call."""
    running.storage.counters.add_listener(metrics.observe_storage_event)
    readiness: metrics.Readiness = {
        "database unreachable": partial(metrics.database_answers, running.storage.engine),
        "replay cache unreachable": running.authenticator.check_replay_cache,
    }
    metrics.init_app(app, running.services, readiness)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The Flask application, configured from defaults, CDS_* environment and `config`: the
    service's settings by name, and Flask's own keys (such as TESTING) for Flask. Any other
    key is refused."""
    flask_keys = {k: v for k, v in (config or {}).items() if _is_flask_key(k)}
    settings = load_config({k: v for k, v in (config or {}).items() if k not in flask_keys})
    app = Flask(__name__)
    # Every answer is JSON: no 308 redirect (an HTML body) from `//` to `/` or to a trailing
    # slash; such paths are plain JSON 404s, or served as written.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    app.config.update(flask_keys, MAX_CONTENT_LENGTH=settings.max_content_length)
    app.json = _UnsortedJSONProvider(app)
    knowledge, services = load_site(settings.site_dir, settings.rule_modes)
    # Once per process: a rule silent or off is a committee's decision the log must show.
    log.info("rule modes: %s", describe({s.id: s.rule_modes for s in services.values()}))
    validation.set_cache_size(settings.validation_cache_size)
    CORS(
        app,
        resources={r"/cds-services*": {"origins": list(settings.cors_origins)}},
        allow_headers=["Authorization", "Content-Type"],
        methods=["GET", "POST", "OPTIONS"],
        max_age=600,
    )
    if not settings.development:
        log.info("production settings")
    authenticator = security.init_app(app, settings)
    app.register_blueprint(hooks_blueprint)
    storage = governance.init_app(app, settings, services.keys)
    running = Runtime(
        settings,
        knowledge,
        services,
        storage,
        authenticator,
        observe_fhir_fetch=metrics.observe_fhir_fetch,
    )
    install(app, running)
    _measure(app, running)
    _json_errors(app)
    app.after_request(_security_headers)
    app.after_request(_read_rest_of_body)
    return app
