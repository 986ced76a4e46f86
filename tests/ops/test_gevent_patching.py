"""The production server's gevent workers patch the standard library before anything copies
names out of `ssl` (issue 22): otherwise urllib3 keeps the unpatched SSLContext and every HTTPS
call of a worker (the EHR's FHIR server, the JWKS) fails with RecursionError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import certifi

from tests.support.network import free_port

# What the master process runs before gunicorn forks its workers: the CLI, its settings check
# (here with a trusted issuer whose fhir_servers and jwks_url are URLs, and one with a pinned
# JWKS file; the start-up checks; the service definitions and rule modes), gunicorn and its
# config. PyJWT too would copy names out of ssl (jwt.jwks_client).
MASTER_IMPORTS = """
import sys
from cds_service import cli
from cds_service import serving
from cds_service.ops import startup
startup.check_settings(["127.0.0.1"], serving._gunicorn_settings()["workers"])
import gunicorn.app.base, gunicorn.arbiter
print(sorted(m for m in ("requests", "urllib3", "flask", "jwt") if m in sys.modules))
"""
PINNED_JWKS = Path(__file__).parents[1] / "security" / "data" / "jwt-example-jwks-public.json"


def test_the_master_process_imports_neither_requests_nor_urllib3():
    issuers = {
        "https://ehr.example.org": {
            "jwks_url": "https://ehr.example.org/jwks.json",
            "fhir_servers": ["https://ehr.example.org/fhir"],
        },
        "https://other-ehr.example.org": {"jwks_file": str(PINNED_JWKS)},
    }
    env = {
        **os.environ,
        "CDS_TRUSTED_ISSUERS": json.dumps(issuers),
        "REQUESTS_CA_BUNDLE": certifi.where(),
    }
    result = subprocess.run(
        [sys.executable, "-c", MASTER_IMPORTS],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]", result.stderr


def test_a_worker_that_would_run_with_an_unpatched_ssl_stops_the_server(tmp_path: Path):
    # As if a change made the master import requests before the workers patch ssl: the
    # MonkeyPatchWarning is an error, the worker fails to boot and the server exits, instead
    # of answering every call that needs HTTPS with an error.
    port = free_port()
    launch = (
        "import sys, requests\n"
        "from cds_service.cli import main\n"
        f"sys.exit(main(['serve', '--production', '--port', '{port}']))\n"
    )
    env = {
        **os.environ,
        "CDS_ENV": "development",
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path}/cds.sqlite3",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "GUNICORN_WORKERS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", launch],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "MonkeyPatchWarning" in result.stderr
    assert "Worker failed to boot" in result.stderr
