"""JWKS documents: the usable signing keys of a key set, read from a pinned file or a fetched
body, and whether one set holds a key of another (the public sandbox's).

Outside the `security` package, whose import brings in requests: the settings check reads
pinned files in the production server's master process, which must import neither requests
nor urllib3 before its gevent workers patch `ssl` (cds_service/ops/gunicorn_conf.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jwt import PyJWK, PyJWKError, PyJWTError

from cds_service.config import ConfigError

JwkDict = dict[str, Any]


def parse_jwks(document: Any) -> dict[str, JwkDict]:
    """The usable signature keys of a JWKS document, by kid; others are left out."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, JwkDict] = {}
    for jwk in document["keys"]:
        if not (
            isinstance(jwk, dict)
            and isinstance(jwk.get("kid"), str)
            and jwk.get("kty") in ("EC", "RSA")
            and jwk.get("use", "sig") == "sig"
        ):
            continue
        try:
            PyJWK(jwk)
        except (PyJWKError, PyJWTError):
            continue
        keys[jwk["kid"]] = jwk
    return keys


def public_key_material(jwk: JwkDict) -> tuple[Any, ...]:
    return tuple(jwk.get(name) for name in ("kty", "crv", "x", "y", "n", "e"))


def holds_a_key_of(keys: Mapping[str, JwkDict], other: Mapping[str, JwkDict]) -> bool:
    """Whether `keys` hold one of `other`'s public keys, under any kid."""
    theirs = {public_key_material(jwk) for jwk in other.values()}
    return any(public_key_material(jwk) in theirs for jwk in keys.values())


def load_jwks_file(path: str) -> dict[str, JwkDict]:
    try:
        return parse_jwks(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise ConfigError(f"JWKS file {path!r} cannot be used: {error}") from error
