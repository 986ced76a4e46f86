"""Fixtures for the CDS client authentication tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.jwt_clients import ISSUER, JWKS_URL, FakeClock, SigningKey, jwks, make_config


@pytest.fixture(scope="session")
def es384_key() -> SigningKey:
    return SigningKey(ec.generate_private_key(ec.SECP384R1()), "ec-key-1", "ES384")


@pytest.fixture(scope="session")
def rs384_key() -> SigningKey:
    return SigningKey(rsa.generate_private_key(65537, 2048), "rsa-key-1", "RS384")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pinned_jwks_file(tmp_path: Path, es384_key: SigningKey, rs384_key: SigningKey) -> str:
    path = tmp_path / "ehr-jwks.json"
    path.write_text(json.dumps(jwks(es384_key, rs384_key)))
    return str(path)


@pytest.fixture
def pinned_config(pinned_jwks_file: str) -> dict[str, Any]:
    """The EHR's keys pinned in a file; its JWKS URL may be named as jku but is not fetched."""
    return make_config(
        TRUSTED_ISSUERS={ISSUER: {"jwks_file": pinned_jwks_file, "jku_allowlist": [JWKS_URL]}}
    )
