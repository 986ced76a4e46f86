"""The JWT `aud` a call must carry: the exact URL of the endpoint invoked (CDS Hooks 2.0
§trusting-cds-clients), compared after normalising case, default ports and trailing slashes."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from cds_service.origins import DEFAULT_PORTS


def normalise_url(url: str) -> str:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: keep it, it will simply not match
        return url
    netloc = host if port in (None, DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def expected_audiences(base_url: str, path: str) -> list[str]:
    """Accepted `aud` values for a call to `path` (below the service root) at `base_url`.

    Feedback (`/cds-services/{id}/feedback`) also accepts the service URL: the spec only shows
    discovery and service audiences, and clients differ on which one they sign.
    """
    endpoint = normalise_url(base_url.rstrip("/") + "/" + path.strip("/"))
    audiences = [endpoint]
    segments = path.strip("/").split("/")
    if len(segments) == 3 and segments[0] == "cds-services" and segments[2] == "feedback":
        audiences.append(endpoint.removesuffix("/feedback"))
    return audiences
