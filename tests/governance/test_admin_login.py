"""Failed admin logins are rate limited per client address, logged and counted (issue 13)."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from cds_service.governance import init_app
from cds_service.governance.admin_login import MAX_FAILURES, WINDOW_SECONDS, FailedLogins

from .conftest import SERVICE_ID, Clock, make_config
from .test_dashboard import PASSWORD, USER, basic

ATTACKER = {"REMOTE_ADDR": "203.0.113.9"}
ADMIN = {"REMOTE_ADDR": "198.51.100.4"}


def _failures_counted() -> float:
    return REGISTRY.get_sample_value("cds_admin_login_failures_total") or 0.0


def test_failed_logins_are_limited_per_address(app: Flask) -> None:
    client = app.test_client()
    wrong = basic(USER, "guess")
    for _ in range(MAX_FAILURES):
        assert client.get("/admin/", headers=wrong, environ_base=ATTACKER).status_code == 401
    blocked = client.get("/admin/", headers=basic(USER, PASSWORD), environ_base=ATTACKER)
    assert blocked.status_code == 429
    assert blocked.is_json
    assert 0 < int(blocked.headers["Retry-After"]) <= WINDOW_SECONDS
    # Another address is not locked out by the attacker.
    assert (
        client.get("/admin/", headers=basic(USER, PASSWORD), environ_base=ADMIN).status_code == 200
    )


def test_a_forged_forwarded_for_does_not_reset_the_count(app: Flask) -> None:
    client = app.test_client()
    for n in range(MAX_FAILURES):
        headers = basic(USER, "guess") | {"X-Forwarded-For": f"10.0.0.{n}"}
        client.get("/admin/", headers=headers, environ_base=ATTACKER)
    headers = basic(USER, "guess") | {"X-Forwarded-For": "10.0.0.99"}
    assert client.get("/admin/", headers=headers, environ_base=ATTACKER).status_code == 429


def test_behind_the_trusted_proxy_the_forwarded_address_counts(app: Flask) -> None:
    # The app's settings trust 127.0.0.1, GUNICORN_FORWARDED_ALLOW_IPS's default.
    client = app.test_client()
    proxy = {"REMOTE_ADDR": "127.0.0.1"}
    for _ in range(MAX_FAILURES):
        headers = basic(USER, "guess") | {"X-Forwarded-For": "1.2.3.4, 203.0.113.9"}
        assert client.get("/admin/", headers=headers, environ_base=proxy).status_code == 401
    attacker = basic(USER, PASSWORD) | {"X-Forwarded-For": "203.0.113.9"}
    assert client.get("/admin/", headers=attacker, environ_base=proxy).status_code == 429
    admin = basic(USER, PASSWORD) | {"X-Forwarded-For": "198.51.100.4"}
    assert client.get("/admin/", headers=admin, environ_base=proxy).status_code == 200


def test_only_the_proxy_the_settings_name_is_trusted(database_url: str, clock: Clock) -> None:
    config = make_config(
        database_url, ADMIN_PASSWORD=PASSWORD, GUNICORN_FORWARDED_ALLOW_IPS="10.1.1.1"
    )
    app = Flask(__name__)
    storage = init_app(app, config, {SERVICE_ID}, clock=clock)
    client = app.test_client()
    local = {"REMOTE_ADDR": "127.0.0.1"}  # not the proxy now: its X-Forwarded-For is ignored
    for n in range(MAX_FAILURES):
        headers = basic(USER, "guess") | {"X-Forwarded-For": f"203.0.113.{n}"}
        client.get("/admin/", headers=headers, environ_base=local)
    admin = basic(USER, PASSWORD) | {"X-Forwarded-For": "198.51.100.4"}
    assert client.get("/admin/", headers=admin, environ_base=local).status_code == 429
    storage.close()


def test_failed_logins_are_logged_and_counted_without_the_password(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    before = _failures_counted()
    caplog.set_level(logging.INFO)
    client = app.test_client()
    assert client.get("/admin/", environ_base=ATTACKER).status_code == 401  # browser's first try
    assert (
        client.get(
            "/admin/", headers=basic("root", "hunter2-secret"), environ_base=ATTACKER
        ).status_code
        == 401
    )
    assert _failures_counted() == before + 1
    [record] = [r for r in caplog.records if r.getMessage() == "admin login failed"]
    assert record.client == "203.0.113.9"
    assert "hunter2-secret" not in caplog.text and "root" not in caplog.text


def test_the_window_slides() -> None:
    now = [0.0]
    logins = FailedLogins(max_failures=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        logins.record_failure("a")
    assert logins.retry_after("a") == 60
    assert logins.retry_after("b") == 0
    now[0] = 59.0
    assert logins.retry_after("a") == 1
    now[0] = 60.0
    assert logins.retry_after("a") == 0
