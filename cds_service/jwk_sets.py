"""JWKS documents: the signing keys of a key set, read from a pinned file or a fetched body,
and whether one set holds a key of another (the public sandbox's).

Outside the `security` package, whose import brings in requests: the settings check reads
pinned files in the production server's master process, which must import neither requests,
urllib3 nor PyJWT (`jwt.jwks_client` copies names out of `ssl`) before its gevent workers
patch `ssl` (cds_service/ops/gunicorn_conf.py). So the master checks a file's shape
(`read_jwks_file`), and each worker builds the keys with PyJWT (`load_jwks_file`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cds_service.config_error import ConfigError

JwkDict = dict[str, Any]
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
# The members a public key needs, by key type.
_KEY_MEMBERS = {"EC": ("crv", "x", "y"), "RSA": ("n", "e")}


def _is_signing_key(jwk: Any) -> bool:
    """A public EC or RSA signature key with a kid, by its shape (no cryptography)."""
    if not (
        isinstance(jwk, dict)
        and isinstance(jwk.get("kid"), str)
        and jwk.get("kty") in _KEY_MEMBERS
        and jwk.get("use", "sig") == "sig"
    ):
        return False
    members = [jwk.get(name) for name in _KEY_MEMBERS[jwk["kty"]]]
    return all(isinstance(value, str) and _BASE64URL.fullmatch(value) for value in members)


def signing_keys(document: Any) -> dict[str, JwkDict]:
    """The keys of a JWKS document shaped as signature keys, by kid; others are left out."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    return {jwk["kid"]: jwk for jwk in document["keys"] if _is_signing_key(jwk)}


def parse_jwks(document: Any) -> dict[str, JwkDict]:
    """The usable signature keys of a JWKS document, by kid (PyJWT builds each one)."""
    from jwt import PyJWK, PyJWKError, PyJWTError  # in workers only: see the module's note

    keys: dict[str, JwkDict] = {}
    for kid, jwk in signing_keys(document).items():
        try:
            PyJWK(jwk)
        except (PyJWKError, PyJWTError):
            continue
        keys[kid] = jwk
    return keys


def public_key_material(jwk: JwkDict) -> tuple[Any, ...]:
    return tuple(jwk.get(name) for name in ("kty", "crv", "x", "y", "n", "e"))


def holds_a_key_of(keys: Mapping[str, JwkDict], other: Mapping[str, JwkDict]) -> bool:
    """Whether `keys` hold one of `other`'s public keys, under any kid."""
    theirs = {public_key_material(jwk) for jwk in other.values()}
    return any(public_key_material(jwk) in theirs for jwk in keys.values())


def read_jwks_file(path: str) -> dict[str, JwkDict]:
    """The signature keys of a JWKS file by their shape (the settings check, in the master)."""
    try:
        return signing_keys(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise ConfigError(f"JWKS file {path!r} cannot be used: {error}") from error


def load_jwks_file(path: str) -> dict[str, JwkDict]:
    """The usable signature keys of a JWKS file (each worker, with PyJWT)."""
    try:
        return parse_jwks(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise ConfigError(f"JWKS file {path!r} cannot be used: {error}") from error
