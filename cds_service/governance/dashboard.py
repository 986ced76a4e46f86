"""`/admin/`: the governance dashboard (charts) and `/admin/api/stats` (the same numbers as
JSON), behind HTTP Basic auth. Without ADMIN_PASSWORD the whole area answers 404."""

from __future__ import annotations

import hmac
from datetime import date, timedelta

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request

from cds_service.config import Settings
from cds_service.governance.admin_login import FailedLogins, client_address
from cds_service.governance.charts import HEIGHT, MARGIN, WIDTH, rate_charts, reason_bars
from cds_service.governance.report import RuleWeekStats, feedback_report

DEFAULT_PERIOD = timedelta(weeks=26)


def dashboard_blueprint(config: Settings) -> Blueprint:
    blueprint = Blueprint("cds_admin", __name__, template_folder="templates")
    user, password = config.admin_user, config.admin_password

    failed_logins = FailedLogins()

    @blueprint.before_request
    def require_admin() -> Response | None:
        if not password:
            abort(404)
        address = client_address(request)
        if wait := failed_logins.retry_after(address):
            response = jsonify(error="too many failed logins; try again later")
            response.status_code = 429
            response.headers["Retry-After"] = str(wait)
            return response
        auth = request.authorization
        if (
            auth is not None
            and auth.type == "basic"
            and hmac.compare_digest((auth.username or "").encode(), user.encode())
            and hmac.compare_digest((auth.password or "").encode(), password.encode())
        ):
            failed_logins.forget(address)
            return None
        if request.headers.get("Authorization"):  # a browser's first, bare request is no try
            failed_logins.record_failure(address)
        response = jsonify(error="authentication required")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="leukopenia-cds admin", charset="UTF-8"'
        return response

    @blueprint.get("/")
    def dashboard() -> str:
        since, stats = _stats_since()
        return render_template(
            "dashboard.html",
            since=since,
            stats=stats,
            charts=rate_charts(stats),
            reasons=reason_bars(stats),
            width=WIDTH,
            height=HEIGHT,
            margin=MARGIN,
        )

    @blueprint.get("/api/stats")
    def stats_json() -> Response:
        since, stats = _stats_since()
        return jsonify(since=since.isoformat(), stats=[s.as_dict() for s in stats])

    return blueprint


def _stats_since() -> tuple[date, list[RuleWeekStats]]:
    storage = current_app.extensions["cds_storage"]
    raw = request.args.get("since")
    if raw is None:
        since = storage.now().date() - DEFAULT_PERIOD
    else:
        try:
            since = date.fromisoformat(raw)
        except ValueError:
            abort(400, description="since must be a date, e.g. 2025-01-31")
    return since, feedback_report(storage, since)
