"""The access log cannot be forged through the URL (issue 13 §3 log injection): gunicorn
percent-decodes the path, so `%0A` used to start a line of the client's choosing."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest

from cds_service.ops.gunicorn_conf import EscapingLogger, access_log_format
from cds_service.ops.logs import escape_control
from tests.support.production_server import production_server

FORGED = '127.0.0.1 "GET /admin/ HTTP/1.1" 200 13 1ms'


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("/a\nb", "/a\\nb"),
        ("/a\r\nb", "/a\\r\\nb"),
        ("/a\x00\x1b[31m", "/a\\u0000\\u001b[31m"),
        ("/a\x85\u2028\u2029", "/a\\u0085\\u2028\\u2029"),
        ("/plain/é path", "/plain/é path"),
    ],
)
def test_control_characters_are_escaped(text, escaped):
    assert escape_control(text) == escaped


def test_every_access_log_field_is_escaped():
    cfg = SimpleNamespace(
        errorlog="-",
        loglevel="info",
        accesslog=None,
        syslog=False,
        logconfig_json=None,
        logconfig_dict={},
        logconfig=None,
        access_log_format=access_log_format,
        capture_output=False,
        disable_redirect_access_to_syslog=False,
        user=0,
        group=0,
    )
    logger = EscapingLogger.__new__(EscapingLogger)
    logger.cfg = cfg
    environ = {
        "REQUEST_METHOD": "GET\n",
        "RAW_URI": "/x%0Ay",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": f"/cds-services/x\n{FORGED}",
        "REMOTE_ADDR": "203.0.113.9",
    }
    response = SimpleNamespace(status="404 NOT FOUND", headers=[], sent=13)
    request = SimpleNamespace(headers=[("USER-AGENT", "a\rb")])
    atoms = logger.atoms(response, request, environ, timedelta(milliseconds=3))
    line = access_log_format % atoms
    assert "\n" not in line and "\r" not in line
    assert f"/cds-services/x\\n{FORGED}" in line
    assert atoms["{user-agent}i"] == "a\\rb"


def _raw_get(port: int, target: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        while connection.recv(65536):
            pass


def test_a_real_servers_access_log_has_one_line_per_call(tmp_path, monkeypatch):
    access_log = tmp_path / "access.log"
    monkeypatch.setenv("GUNICORN_ACCESSLOG", str(access_log))
    with production_server(tmp_path, workers=1) as (base, _process):
        port = int(base.rsplit(":", 1)[1])
        _raw_get(port, "/cds-services/x%0A" + FORGED.replace(" ", "%20").replace('"', "%22"))
        _raw_get(port, "/cds-services/y%0D%0Aforged")
        for _ in range(50):  # the worker writes the line after answering
            if access_log.exists() and "forged" in access_log.read_text():
                break
            time.sleep(0.1)
    lines = access_log.read_text().splitlines()
    calls = [line for line in lines if "/cds-services/" in line]
    assert len(calls) == 2, lines
    assert not any(line.startswith('127.0.0.1 "GET /admin/') for line in lines)
    assert "\\n127.0.0.1" in calls[0] and "\\r\\nforged" in calls[1]


def test_start_up_logs_carry_no_alembic_plugin_lines(tmp_path):
    import json
    import os
    import subprocess
    import sys

    code = (
        "from cds_service.ops.logs import configure_logging; configure_logging()\n"
        "from cds_service import create_app; create_app()\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDS_")} | {
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path}/cds.sqlite3"
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert "Running upgrade  -> 0001, Card history and feedback." in [e["message"] for e in lines]
    assert not [e for e in lines if "setup plugin" in e["message"]]
