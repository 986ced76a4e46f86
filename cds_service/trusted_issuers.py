"""The trusted CDS clients (`CDS_TRUSTED_ISSUERS`): the shape of each issuer's entry, its JWKS
file and fhirServer allowlist, checked at start-up, and the public sandbox the development
default trusts (its private key is published: refused in production, under any name).

Checked in the production server's master process, so nothing here imports requests, urllib3
or PyJWT (cds_service/ops/gunicorn_conf.py): files are read by their shape (jwk_sets.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cds_service.config_error import ConfigError
from cds_service.jwk_sets import holds_a_key_of, read_jwks_file
from cds_service.origins import base_origin, is_web_url

SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JWKS_FILE = str(Path(__file__).parent / "security" / "sandbox-jwks.json")
# The development default.
SANDBOX_ISSUERS = {
    SANDBOX_ISSUER: {
        "jwks_file": SANDBOX_JWKS_FILE,
        "jku_allowlist": ["https://sandbox.cds-hooks.org/.well-known/jwks.json"],
    }
}
_ISSUER_KEYS = {"jwks_file", "jwks_url", "jku_allowlist", "tenants", "fhir_servers"}
# A JWKS file holds a few public keys (~1 KB each).
MAX_JWKS_FILE_BYTES = 1024 * 1024


def check_trusted_issuers(issuers: Mapping[str, Any], production: bool) -> None:
    """ConfigError naming the first issuer whose entry cannot be used (in production: also
    one that is, or holds the key of, the public sandbox)."""
    for issuer, entry in issuers.items():
        _check_issuer(issuer, entry, production)


def _check_issuer(issuer: str, entry: Any, production: bool) -> None:
    name = f"CDS_TRUSTED_ISSUERS[{issuer!r}]"
    if not isinstance(entry, Mapping) or not set(entry) <= _ISSUER_KEYS:
        raise ConfigError(f"{name} must be an object with keys {sorted(_ISSUER_KEYS)}")
    jku_allowlist = entry.get("jku_allowlist") or []
    if not isinstance(jku_allowlist, list):
        raise ConfigError(f"{name}.jku_allowlist must be a list of URLs")
    urls = [*jku_allowlist, *([entry["jwks_url"]] if entry.get("jwks_url") else [])]
    for url in urls:
        if not is_web_url(url, https_only=production):
            raise ConfigError(f"{name}: {url!r} is not an allowed JWKS URL")
    tenants = entry.get("tenants")
    if tenants is not None and not (
        isinstance(tenants, list) and all(isinstance(t, str) for t in tenants)
    ):
        raise ConfigError(f"{name}.tenants must be a list of strings or null")
    if not entry.get("jwks_file") and not urls:
        raise ConfigError(f"{name} needs a jwks_file, a jwks_url or a jku_allowlist")
    _check_jwks_file(name, entry.get("jwks_file"), production)
    _check_fhir_servers(name, entry.get("fhir_servers"), production)
    if production and (
        issuer == SANDBOX_ISSUER
        or entry.get("jwks_file") == SANDBOX_JWKS_FILE
        or any(urlsplit(url).hostname == urlsplit(SANDBOX_ISSUER).hostname for url in urls)
    ):
        raise ConfigError(f"{name}: the public sandbox's key cannot be trusted in production")


def _check_jwks_file(name: str, jwks_file: Any, production: bool) -> None:
    """Checked here, once, in the master: a missing or malformed file, or the sandbox's key in
    production, would otherwise fail every worker with a traceback (a crash loop)."""
    if jwks_file is None:
        return
    if not isinstance(jwks_file, str) or not Path(jwks_file).is_file():
        raise ConfigError(f"{name}.jwks_file: {jwks_file!r} is not a readable file")
    where = f"{name}.jwks_file {jwks_file!r}"
    if Path(jwks_file).stat().st_size > MAX_JWKS_FILE_BYTES:
        raise ConfigError(f"{where} is larger than {MAX_JWKS_FILE_BYTES} bytes: not a JWKS file")
    try:
        keys = read_jwks_file(jwks_file)
    except ConfigError:
        raise ConfigError(f"{where} is not a JWKS document (JSON with a 'keys' list)") from None
    if not keys:
        raise ConfigError(f"{where} holds no usable signature key (EC or RSA, with a kid)")
    if production and holds_a_key_of(keys, read_jwks_file(SANDBOX_JWKS_FILE)):
        raise ConfigError(f"{where} holds the public sandbox's key, refused in production")


def _check_fhir_servers(name: str, rule: Any, production: bool) -> None:
    if rule is None:
        return
    lists = rule.values() if isinstance(rule, Mapping) else [rule]
    message = (
        f"{name}.fhir_servers must be a list of fhirServer base URLs, or an object of such "
        "lists keyed by tenant"
    )
    for urls in lists:
        if not isinstance(urls, list):
            raise ConfigError(message)
        for url in urls:
            # Checked in the production server's master process: no requests there.
            found = base_origin(url, client_check=False) if isinstance(url, str) else None
            if found is None or (production and found.scheme != "https"):
                raise ConfigError(f"{name}.fhir_servers: {url!r} is not a plain https base URL")
