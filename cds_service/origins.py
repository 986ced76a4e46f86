"""The origin (scheme, host, port) of a URL, read only from a plain form every URL parser
reads alike: the token the EHR gives for fhirServer may be sent only to fhirServer's origin,
and settings name URLs (JWKS, fhirServer allowlists) that are checked at start-up.

URL parsers disagree on odd spellings: `http://A\\@B/` is host B for `urllib.parse` but host A
for requests, which would carry the token to A. So a URL is accepted only in a plain form, and
its origin is then checked again with the HTTP client's own parser:

- `http` or `https`, then `://`, then a host of letters, digits, dots and hyphens (or an IPv6
  literal in brackets), then an optional port without leading zeros, then `/`, `?`, `#` or the end;
- no userinfo (`@` in the authority), no percent-encoding in the host;
- only visible ASCII anywhere: no backslash, whitespace, control or non-ASCII character.

A low module: it imports nothing of the project, so settings (cds_service/config.py) and the
FHIR links (cds_service/fhir/links.py) both build on it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

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


def is_web_url(value: Any, *, https_only: bool) -> bool:
    """Whether a setting's value is an absolute https (or, unless `https_only`, http) URL
    without a fragment: a JWKS URL, the service's public base URL."""
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    schemes = ("https",) if https_only else ("https", "http")
    return parts.scheme in schemes and bool(parts.netloc) and not parts.fragment
