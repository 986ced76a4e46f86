"""Issue 24: where the server listens and which CA bundle it trusts are checked before it
starts: one line, exit status 2.

Slow connections: the service does not bound connections per client or the time a request
may take to arrive (a few hundred trickling connections hold every greenlet), so it listens
on loopback unless CDS_BEHIND_PROXY says a buffering proxy is its only client."""

from __future__ import annotations

import os
import subprocess
import sys

import certifi
import pytest

from cds_service.config import ConfigError, load_config
from cds_service.ops.startup import check_binds, check_ca_bundle
from tests.support.settings import production

PUBLIC = ["0.0.0.0", "0.0.0.0:8080", "[::]:8080", "::", "10.0.0.5:8080", "cds.example.org:80"]
LOCAL = ["127.0.0.1", "127.0.0.1:8080", "[::1]:8080", "localhost:8080", "unix:/run/cds.sock"]


@pytest.mark.parametrize("bind", PUBLIC)
def test_a_public_bind_needs_the_proxy_setting(bind):
    with pytest.raises(ConfigError, match="CDS_BEHIND_PROXY"):
        check_binds(load_config(), [bind])
    check_binds(load_config({"BEHIND_PROXY": True}), [bind])


@pytest.mark.parametrize("bind", LOCAL)
def test_loopback_and_sockets_need_nothing(bind):
    check_binds(load_config(), [bind])


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    command = [sys.executable, "-m", "cds_service.cli", "serve", *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=30)


def _production_env() -> dict[str, str]:
    import json

    return {f"CDS_{k}": v if isinstance(v, str) else json.dumps(v) for k, v in production().items()}


@pytest.mark.parametrize("production_server", [True, False], ids=["production", "development"])
def test_serve_refuses_a_public_bind_without_the_proxy_in_one_line(production_server):
    env = {"GUNICORN_WORKERS": "1", **_production_env()} if production_server else {}
    flags = ["--production"] if production_server else []
    done = _cli(env, *flags, "--host", "0.0.0.0", "--port", "9")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "CDS_BEHIND_PROXY" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("content", "said"),
    [(None, "No such file"), (b"", "no PEM"), (b"-----BEGIN CERTIFICATE-----\nxx\n", "no PEM")],
    ids=["missing", "empty", "garbage"],
)
def test_a_wrong_ca_bundle_is_refused(tmp_path, monkeypatch, content, said):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(path))
    with pytest.raises(ConfigError, match=rf"^REQUESTS_CA_BUNDLE: '.*ca.pem' .*{said}"):
        check_ca_bundle()


def test_a_real_ca_bundle_or_none_is_accepted(monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    check_ca_bundle()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    check_ca_bundle()


def test_serve_stops_on_a_wrong_ca_bundle_in_one_line(tmp_path):
    env = {"REQUESTS_CA_BUNDLE": str(tmp_path / "missing.pem"), "GUNICORN_WORKERS": "1"}
    done = _cli({**env, **_production_env()}, "--production", "--port", "9")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "REQUESTS_CA_BUNDLE" in done.stderr and "Traceback" not in done.stderr


def test_plain_gunicorn_with_the_config_file_checks_the_bind_too(monkeypatch, capsys):
    from types import SimpleNamespace

    from cds_service.ops import gunicorn_conf

    server = SimpleNamespace(cfg=SimpleNamespace(workers=1, bind=["0.0.0.0:8080"]))
    with pytest.raises(SystemExit) as exit_:
        gunicorn_conf.on_starting(server)
    assert exit_.value.code == 2
    assert "CDS_BEHIND_PROXY" in capsys.readouterr().err
    monkeypatch.setenv("CDS_BEHIND_PROXY", "true")
    gunicorn_conf.on_starting(server)
