"""Which URLs are on fhirServer's origin, so that the EHR's access token may be sent there.

Links come from the client (fhirServer, `medicationReference`) and from the FHIR server
(Bundle `next` links). A link is accepted only in a plain form every URL parser reads alike,
its origin read as cds_service/origins.py says.

Paths are compared segment by segment, and a path with a dot segment (`.` or `..`, also
percent-encoded as `%2e`) or an encoded slash or backslash (`%2f`, `%5c`) is refused rather
than resolved: servers and proxies disagree on how to resolve them, so
`https://ehr/fhir/../admin` could pass a check for `/fhir` and reach `/admin`. A followed
link (`next`, `medicationReference`) must also lie on fhirServer's base path, not merely its
origin.

Anything else is not followed (the data is then reported missing, never guessed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cds_service.origins import base_origin, origin


def same_origin(url: str, base_url: str) -> bool:
    """Whether `url` may receive the token given for `base_url` (both must be plain URLs)."""
    link = origin(url)
    return link is not None and link == base_origin(base_url)


# A segment a server may resolve or split: `.`, `..` (any case of `%2e`), or one holding an
# encoded `/` or `\`.
_AMBIGUOUS_SEGMENT = re.compile(r"(?:\.|%2e){1,2}|.*%(?:2f|5c).*", re.IGNORECASE)


def path_segments(url: str) -> list[str] | None:
    """The non-empty path segments of a plain URL, or None when the path is ambiguous (a dot
    segment or an encoded slash: refused, never resolved)."""
    path = re.split(r"[?#]", url.split("://", 1)[1], maxsplit=1)[0].partition("/")[2]
    segments = [segment for segment in path.split("/") if segment]
    if any(_AMBIGUOUS_SEGMENT.fullmatch(segment) for segment in segments):
        return None
    return segments


def _below(url: str, base_url: str) -> bool:
    """Whether `url`'s path is `base_url`'s path or below it (whole segments), both plain."""
    found, prefix = path_segments(url), path_segments(base_url)
    return found is not None and prefix is not None and found[: len(prefix)] == prefix


def on_server(url: str, base_url: str) -> bool:
    """Whether `url` (a `next` link, a Medication URL) is on fhirServer: its origin and below
    its base path. The token for `https://ehr/fhir/tenant-a` is not for `.../tenant-b`."""
    return same_origin(url, base_url) and _below(url, base_url)


def within(base_url: str, allowed: str) -> bool:
    """Whether fhirServer `base_url` is `allowed` or below it (whole path segments)."""
    found, wanted = base_origin(base_url), base_origin(allowed)
    if found is None or found != wanted:
        return False
    return _below(base_url, allowed)


def fhir_server_allowed(
    base_url: str, issuer_settings: Mapping[str, Any], tenant: str | None
) -> bool:
    """Whether a CDS client (issuer and tenant) may name `base_url` as fhirServer.

    An issuer without `fhir_servers` may name any (a plain https URL, still). `fhir_servers`
    is a list of allowed base URLs for every tenant, or an object of such lists per tenant."""
    rule = issuer_settings.get("fhir_servers")
    if rule is None:
        return True
    allowed = rule.get(tenant or "", []) if isinstance(rule, Mapping) else rule
    return any(within(base_url, entry) for entry in allowed)


def origin_text(url: str) -> str:
    """`scheme://host:port` of a URL, for logs (no path or query: they may hold patient ids)."""
    found = origin(url)
    return f"{found.scheme}://{found.host}:{found.port}" if found else "(not a plain URL)"
