"""Which URLs are on fhirServer's origin, so that the EHR's access token may be sent there.

Links come from the client (fhirServer, `medicationReference`) and from the FHIR server
(Bundle `next` links). URL parsers disagree on odd spellings: `http://A\\@B/` is host B for
`urllib.parse` but host A for requests, which would carry the token to A. So a link is
accepted only in a plain form every parser reads alike, and its origin is then checked again
with the HTTP client's own parser:

- `http` or `https`, then `://`, then a host of letters, digits, dots and hyphens (or an IPv6
  literal in brackets), then an optional port without leading zeros, then `/`, `?`, `#` or the end;
- no userinfo (`@` in the authority), no percent-encoding in the host;
- only visible ASCII anywhere: no backslash, whitespace, control or non-ASCII character.

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
from functools import lru_cache
from typing import Any, NamedTuple

DEFAULT_PORTS = {"https": 443, "http": 80}
# Visible ASCII except the backslash. RFC 3986 allows fewer, but FHIR searches write `|`
# unencoded (`code=http://loinc.org|29463-7`), and requests percent-encodes such characters.
_VISIBLE_ASCII = re.compile(r"[!-\[\]-~]*")
_PLAIN_ORIGIN = re.compile(
    r"(?P<scheme>https?)://"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
    r"(?=[/?#]|\Z)",
    re.IGNORECASE,
)


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


def origin(url: str, *, client_check: bool = True) -> Origin | None:
    """The origin of `url` if it is a plain absolute http(s) URL, else None (not followed).

    `client_check=False` skips the second reading by the HTTP client's parser: for settings
    checked at start-up, before requests may be imported (see _client_origin). A setting that
    the client would read otherwise still matches no link at run time: it fails closed."""
    if not isinstance(url, str) or not _VISIBLE_ASCII.fullmatch(url):
        return None
    match = _PLAIN_ORIGIN.match(url)
    if match is None:
        return None
    scheme = match["scheme"].lower()
    port = int(match["port"]) if match["port"] else DEFAULT_PORTS[scheme]
    if port > 65535:
        return None
    found = Origin(scheme, match["host"].lower(), port)
    if not client_check:
        return found
    # The client's parser reads the authority up to the first `/`, `?` or `#` as the pattern
    # does, so checking the matched `scheme://host:port` checks the URL, and a hook call's
    # many links to one server are parsed once.
    return found if _client_origin(match[0]) == found else None


def base_origin(base_url: str, *, client_check: bool = True) -> Origin | None:
    """The origin of a fhirServer base URL: a plain URL with no query or fragment (relative
    URLs are appended to it)."""
    if not isinstance(base_url, str) or "?" in base_url or "#" in base_url:
        return None
    return origin(base_url, client_check=client_check)


@lru_cache(maxsize=1024)
def _client_origin(url: str) -> Origin | None:
    """The origin requests would connect to for `url` (its own preparation and parser).

    requests and urllib3 are imported here, not at the top: settings (which check URLs with
    this module) are validated in the production server's master process, which must not
    import them before its gevent workers patch `ssl` (cds_service/__init__.py)."""
    from requests.exceptions import RequestException
    from requests.models import PreparedRequest
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    prepared = PreparedRequest()
    try:
        prepared.prepare_url(url, None)
        parts = parse_url(prepared.url or "")
    except (RequestException, LocationParseError, ValueError):
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.host or parts.auth is not None:
        return None
    return Origin(parts.scheme, parts.host.lower(), parts.port or DEFAULT_PORTS[parts.scheme])


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
