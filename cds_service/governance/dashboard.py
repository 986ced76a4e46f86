"""`/admin/`: the governance console (issue 26: per rule, live and silent burden, outcomes,
weekly trends with knowledge-version markers, override reasons; every table as CSV under
`/admin/export/`), and `/admin/api/stats` (the feedback report as JSON), behind HTTP Basic
auth. Without ADMIN_PASSWORD the whole area answers 404. The charts are drawn by Chart.js,
shipped in the package (static/) and served from here: nothing is fetched from elsewhere."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection
from datetime import date, timedelta
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, jsonify, render_template, request

from cds_service.config import Settings
from cds_service.governance.admin_login import FailedLogins, client_address
from cds_service.governance.burden import GovernanceReport, Period, governance_report
from cds_service.governance.report import RuleWeekStats, feedback_report
from cds_service.governance.store import Storage
from cds_service.governance.tables import reasons_table, rules_table, weeks_table

DEFAULT_PERIOD = timedelta(weeks=26)
CONSOLE_PERIOD = timedelta(weeks=4)
EXPORTS = ("rules", "weeks", "reasons")


def dashboard_blueprint(
    config: Settings, storage: Storage, service_ids: Callable[[], Collection[str]] = lambda: ()
) -> Blueprint:
    blueprint = Blueprint(
        "cds_admin",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    user, password = config.admin_user, config.admin_password

    failed_logins = FailedLogins()

    @blueprint.before_request
    def require_admin() -> Response | None:
        if not password:
            abort(404)
        address = client_address(request, config.gunicorn_forwarded_allow_ips)
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
    def console() -> str:
        period = _period(storage, service_ids())
        report = _report(storage, period)
        calls = report.calls
        overall = {
            mode: _shown_rate(calls.per_100(sum(getattr(r, mode) for r in report.rules)))
            for mode in ("live", "silent")
        }

        def export(name: str, rule: str | None = None) -> str:
            query = {"from": period.first.isoformat(), "to": period.last.isoformat()}
            query |= {"service": period.service_id} if period.service_id else {}
            query |= {"rule": rule} if rule else {}
            return f"export/{name}.csv?{urlencode(query)}"

        return render_template(
            "console.html",
            period=period,
            services=sorted(service_ids()),
            report=report,
            overall=overall,
            rules=rules_table(report),
            reasons=reasons_table(report),
            trends=[
                {"rule": r.rule_id, "table": weeks_table(report, r.rule_id)} for r in report.rules
            ],
            export=export,
        )

    @blueprint.get("/export/<name>.csv")
    def export_csv(name: str) -> Response:
        if name not in EXPORTS:
            abort(404)
        period = _period(storage, service_ids())
        report = _report(storage, period)
        rule = request.args.get("rule")
        if rule is not None and (name != "weeks" or rule not in {r.rule_id for r in report.rules}):
            abort(404)
        table = {
            "rules": rules_table,
            "reasons": reasons_table,
            "weeks": lambda r: weeks_table(r, rule),
        }[name](report)
        filename = f"governance-{name}-{period.first.isoformat()}-{period.last.isoformat()}.csv"
        return Response(
            table.csv(),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @blueprint.get("/api/stats")
    def stats_json() -> Response:
        since, stats = _stats_since(storage)
        return jsonify(since=since.isoformat(), stats=[s.as_dict() for s in stats])

    return blueprint


def _stats_since(storage: Storage) -> tuple[date, list[RuleWeekStats]]:
    raw = request.args.get("since")
    if raw is None:
        since = storage.now().date() - DEFAULT_PERIOD
    else:
        try:
            since = date.fromisoformat(raw)
        except ValueError:
            abort(400, description="since must be a date, e.g. 2025-01-31")
    return since, feedback_report(storage, since)


def _period(storage: Storage, services: Collection[str]) -> Period:
    """The console's period and service from the query: `from`, `to` (days, included) and
    `service` (empty: every service); by default the last 4 weeks up to today."""
    try:
        last = date.fromisoformat(request.args.get("to") or storage.now().date().isoformat())
        first = date.fromisoformat(
            request.args.get("from") or (last - CONSOLE_PERIOD + timedelta(days=1)).isoformat()
        )
    except ValueError:
        abort(400, description="from and to must be dates, e.g. 2025-01-31")
    service = request.args.get("service") or None
    if service is not None and service not in services:
        abort(400, description="service must be one of this server's services")
    try:
        return Period(first, last, service)
    except ValueError as error:
        abort(400, description=str(error))


def _report(storage: Storage, period: Period) -> GovernanceReport:
    return governance_report(storage.engine, period, storage.snooze_system, storage.snooze_codes)


def _shown_rate(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.1f}"
