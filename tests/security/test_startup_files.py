"""Issue 24: a malformed JWKS file, or one holding the public sandbox's key in production, is
one line naming the setting and exit status 2, in the master, before any worker starts (it
used to crash-loop the workers with tracebacks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cds_service.config import ConfigError
from cds_service.trusted_issuers import SANDBOX_JWKS_FILE
from tests.support.jwt_clients import ISSUER, make_config

from .test_flask_integration import PRODUCTION

BAD_FILES = {
    "not JSON": b"-----BEGIN PUBLIC KEY-----\nMFkw...\n",
    "bad UTF-8": b'{"keys": ["\xff\xfe"]}',
    "a list": b"[]",
    "no keys list": b'{"keys": {}}',
    "no usable key": b'{"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}',
    "an EC key without kid": b'{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}',
    "empty": b"",
}


@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_malformed_jwks_file_is_refused_naming_the_setting(tmp_path, content):
    path = tmp_path / "jwks.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"^CDS_TRUSTED_ISSUERS\[.*\]\.jwks_file '.*jwks.json'"):
        make_config(TRUSTED_ISSUERS={ISSUER: {"jwks_file": str(path)}})


def _serve(tmp_path: Path, jwks: bytes) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "jwks.json"
    path.write_bytes(jwks)
    env = {
        "PATH": "/usr/bin:/bin",
        "CDS_ENV": "production",
        "CDS_PUBLIC_BASE_URL": PRODUCTION["PUBLIC_BASE_URL"],
        "CDS_CORS_ORIGINS": '["https://ehr.example.org"]',
        "CDS_PATIENT_KEY_SECRET": "s" * 40,
        "CDS_TRUSTED_ISSUERS": json.dumps({ISSUER: {"jwks_file": str(path)}}),
    }
    command = [sys.executable, "-m", "cds_service.cli", "serve", "--production", "--port", "9"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("jwks", "said"),
    [
        (b'{"keys": [', "is not a JWKS document"),
        (Path(SANDBOX_JWKS_FILE).read_bytes(), "holds the public sandbox's key"),
    ],
    ids=["malformed", "the sandbox's key"],
)
def test_the_production_server_stops_with_one_line_and_exit_2(tmp_path, jwks, said):
    done = _serve(tmp_path, jwks)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "CDS_TRUSTED_ISSUERS" in done.stderr and "jwks_file" in done.stderr
    assert said in done.stderr
    assert "Traceback" not in done.stderr


def test_production_cors_origins_must_be_https():
    with pytest.raises(ConfigError, match="CDS_CORS_ORIGINS"):
        make_config(**{**PRODUCTION, "CORS_ORIGINS": ["http://ehr.example.org"]})
    with pytest.raises(ConfigError, match="CDS_CORS_ORIGINS"):
        make_config(**{**PRODUCTION, "CORS_ORIGINS": ["https://ehr.example.org", "http://x.org"]})
    # Development still accepts the sandbox's and a local EHR's http origins.
    make_config(CORS_ORIGINS=["http://localhost:3000"])
