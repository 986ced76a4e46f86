"""Which network addresses a development server may fetch from.

Development settings read an http `fhirServer` without a token and need no JWT, so whoever
can call the service can make it fetch from any URL: the cloud metadata address
(169.254.169.254), the admin pages of the office network. Development therefore refuses a
fhirServer whose host is, or resolves to, a link-local or other non-public address (private
ranges, CGNAT, reserved, unspecified), unless the host is listed in
`CDS_FHIR_ALLOW_PRIVATE_HOSTS` (the compose demo lists its HAPI server, `fhir`). Loopback stays
allowed (a local test server), since development listens on loopback only
(cds_service/ops/startup.py).

Production is not limited here: the EHR's FHIR server is usually on a private network; there
the per-issuer `fhir_servers` allowlist decides. A name is resolved once for the check and
again when requests connects, so a DNS answer that changes in between (DNS rebinding) is not
caught: this protects a developer's machine from casual misuse, not from a determined
attacker, which is why development binds loopback.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection

from cds_service.origins import origin

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _not_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_loopback and not address.is_global


def _addresses(host: str, port: int) -> list[IpAddress]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []  # not resolvable: the fetch fails on its own, and says so
    return [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in found]


def refused_in_development(fhir_server: str, allowed_hosts: Collection[str]) -> str | None:
    """Why development must not fetch from `fhir_server`, or None."""
    found = origin(fhir_server)
    if found is None or "*" in allowed_hosts or found.host in allowed_hosts:
        return None
    if any(_not_public(address) for address in _addresses(found.host, found.port)):
        return (
            "fhirServer is on a private or link-local address; development settings fetch "
            "from it only if CDS_FHIR_ALLOW_PRIVATE_HOSTS lists its host"
        )
    return None
