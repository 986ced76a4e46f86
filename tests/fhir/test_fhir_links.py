"""The EHR's FHIR access token goes to fhirServer's origin only, however a link is spelt
(issue 13 §2): the link table, then the token's path through `next` links and
`medicationReference` URLs, with `responses` and over real sockets."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import responses

from cds_service.config import load_config
from cds_service.fhir.client import FhirUnavailable, fhir_server_for
from cds_service.fhir.gather import gather
from cds_service.fhir.links import origin, same_origin

from .conftest import CONTEXT, full_prefetch, resource, searchset

BASE = "https://ehr.example.org/fhir"
EHR = "ehr.example.org"
EVIL = "evil.example.net"
TOKEN = "secret-ehr-token-5d1a"

# Every trick of the review, spelt against fhirServer https://ehr.example.org/fhir.
REFUSED = {
    "backslash before @": f"https://{EVIL}\\@{EHR}/fhir/Condition?page=2",
    "backslash before @ with port": f"https://{EVIL}:8443\\@{EHR}/fhir/Condition",
    "userinfo naming the EHR": f"https://{EHR}@{EVIL}/fhir/Condition",
    "userinfo before the EHR": f"https://{EVIL}@{EHR}/fhir/Condition",
    "userinfo with password": f"https://user:pass@{EHR}/fhir/Condition",
    "#@": f"https://{EVIL}#@{EHR}/fhir/Condition",
    "?@": f"https://{EVIL}?@{EHR}/fhir/Condition",
    "encoded slash in userinfo": f"https://{EVIL}%2F@{EHR}/fhir/Condition",
    "encoded slash in host": f"https://{EHR}%2F.{EVIL}/fhir/Condition",
    "encoded at": f"https://{EVIL}%40{EHR}/fhir/Condition",
    "tab": f"https://{EVIL}\t@{EHR}/fhir/Condition",
    "tab in path": f"https://{EHR}/fhir/\tCondition",
    "space": f"https://{EVIL} @{EHR}/fhir/Condition",
    "space in path": f"https://{EHR}/fhir/Condition?code=a b",
    "newline": f"https://{EHR}/fhir/Condition\n",
    "carriage return": f"https://{EHR}\r/fhir/Condition",
    "NUL": f"https://{EHR}\x00.{EVIL}/fhir/Condition",
    "DEL": f"https://{EHR}/fhir/\x7fCondition",
    "non-ASCII dot": f"https://{EHR}\u3002{EVIL}/fhir/Condition",
    "fullwidth at": f"https://{EVIL}\uff20{EHR}/fhir/Condition",
    "scheme-relative to another host": f"//{EVIL}/fhir/Condition",
    "scheme-relative to the EHR": f"//{EHR}/fhir/Condition",
    "relative path": "Condition?page=2",
    "one slash": f"https:/{EVIL}/fhir/Condition",
    "one slash to the EHR": f"https:/{EHR}/fhir/Condition",
    "no slash": f"https:{EHR}/fhir/Condition",
    "three slashes": f"https:///{EVIL}/fhir/Condition",
    "upper-case scheme to another host": f"HTTPS://{EVIL}/fhir/Condition",
    "leading-zero port": f"https://{EHR}:0443/fhir/Condition",
    "leading-zero port elsewhere": f"https://{EHR}:08443/fhir/Condition",
    "port out of range": f"https://{EHR}:65979/fhir/Condition",
    "empty port": f"https://{EHR}:/fhir/Condition",
    "double backslash": f"https:\\\\{EVIL}\\@{EHR}/fhir/Condition",
    "backslash in path": f"https://{EHR}\\\\{EVIL}/fhir/Condition",
    "another port": f"https://{EHR}:8443/fhir/Condition",
    "plain http": f"http://{EHR}/fhir/Condition",
    "another scheme": f"ftp://{EHR}/fhir/Condition",
    "another host": f"https://{EVIL}/fhir/Condition",
    "a subdomain": f"https://{EHR}.{EVIL}/fhir/Condition",
    "trailing dot host": f"https://{EHR}./fhir/Condition",
}
FOLLOWED = {
    "same origin": f"https://{EHR}/fhir/Condition?page=2",
    "default port written out": f"https://{EHR}:443/fhir/Condition?page=2",
    "upper-case scheme and host": "HTTPS://EHR.Example.org/fhir/Condition",
    "@ in the query": f"https://{EHR}/fhir/Patient?email=a@{EVIL}",
    "@ in the path": f"https://{EHR}/fhir/Condition/@{EVIL}",
    "percent-encoding in the query": f"https://{EHR}/fhir/Condition?patient=pat%201%262",
    "origin alone": f"https://{EHR}",
}
# Numeric hosts: another spelling of fhirServer's address is another origin.
IP_BASE = "https://127.0.0.1/fhir"
IP_REFUSED = {
    "IPv6-mapped": "https://[::ffff:127.0.0.1]/fhir/Condition",
    "IPv6-mapped hex": "https://[::ffff:7f00:1]/fhir/Condition",
    "decimal IP": "https://2130706433/fhir/Condition",
    "octal IP": "https://0177.0.0.1/fhir/Condition",
    "hex IP": "https://0x7f.0.0.1/fhir/Condition",
    "short IP": "https://127.1/fhir/Condition",
}


@pytest.mark.parametrize("link", REFUSED.values(), ids=REFUSED.keys())
def test_tricky_links_are_not_on_fhir_servers_origin(link):
    assert not same_origin(link, BASE)


@pytest.mark.parametrize("link", FOLLOWED.values(), ids=FOLLOWED.keys())
def test_plain_links_on_fhir_servers_origin_are_followed(link):
    assert same_origin(link, BASE)


@pytest.mark.parametrize("link", IP_REFUSED.values(), ids=IP_REFUSED.keys())
def test_other_spellings_of_an_ip_address_are_another_origin(link):
    assert not same_origin(link, IP_BASE)
    assert same_origin("https://127.0.0.1:443/fhir/Condition", IP_BASE)


def test_ipv6_literal_fhir_server_is_its_own_origin():
    assert origin("https://[2001:db8::1]:8443/fhir") == ("https", "[2001:db8::1]", 8443)
    assert same_origin("https://[2001:db8::1]:8443/fhir/x", "https://[2001:db8::1]:8443/fhir")


# Plain URLs of another origin: valid fhirServer values of their own.
PLAIN_ELSEWHERE = {
    "another port",
    "plain http",
    "another host",
    "a subdomain",
    "upper-case scheme to another host",
}
TRICKY_BASES = {k: v for k, v in REFUSED.items() if k not in PLAIN_ELSEWHERE}


@pytest.mark.parametrize("base", TRICKY_BASES.values(), ids=TRICKY_BASES.keys())
def test_a_tricky_fhir_server_is_refused_before_any_call(base):
    config = load_config({"ENV": "testing"})
    with pytest.raises(FhirUnavailable, match="not a plain http"):
        fhir_server_for(base, TOKEN, config)


# --- End to end: the token's path through gather() ---------------------------------------


def _hosts_that_received_the_token(mock: responses.RequestsMock) -> set[str]:
    return {
        requests.utils.urlparse(call.request.url).hostname or ""
        for call in mock.calls
        if call.request.headers.get("Authorization") == f"Bearer {TOKEN}"
    }


@pytest.fixture
def anywhere() -> Iterator[responses.RequestsMock]:
    """Every host answers: an empty searchset or a Medication, and records who called."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(
            re.compile(r".*/Medication/.*"),
            json=resource("Medication", "m2"),
            content_type="application/fhir+json",
        )
        mock.get(re.compile(r".*"), json=searchset(), content_type="application/fhir+json")
        yield mock


TRICKY_LINKS = [link for link in REFUSED.values() if EVIL in link]


@pytest.mark.parametrize("link", TRICKY_LINKS)
def test_a_tricky_next_link_never_carries_the_token_away(templates, anywhere, link):
    config = load_config({"ENV": "testing"})
    first = searchset(resource("Condition", "c1"), next_url=link)
    prefetch = full_prefetch(templates) | {"conditions": first}
    gathered = gather(templates, CONTEXT, prefetch, BASE, TOKEN, config)
    assert _hosts_that_received_the_token(anywhere) <= {EHR}
    assert len(anywhere.calls) == 0
    assert "outside fhirServer" in gathered.incomplete["conditions"]


@pytest.mark.parametrize("link", TRICKY_LINKS)
def test_a_tricky_medication_reference_never_carries_the_token_away(templates, anywhere, link):
    config = load_config({"ENV": "testing"})
    reference = link.split("/fhir/")[0] + "/fhir/Medication/m2" if "/fhir/" in link else link
    request = resource("MedicationRequest", "rx1", medicationReference={"reference": reference})
    prefetch = full_prefetch(templates) | {"medicationRequests": searchset(request)}
    gathered = gather(templates, CONTEXT, prefetch, BASE, TOKEN, config)
    assert _hosts_that_received_the_token(anywhere) <= {EHR}
    assert "medications" in gathered.incomplete | gathered.unavailable


# --- Over real sockets: a second local server must receive nothing --------------------------


class _Recorder(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.authorizations.append(self.headers.get("Authorization"))  # type: ignore[attr-defined]
        body = b'{"resourceType": "Bundle", "type": "searchset", "entry": []}'
        if "/Medication/" in self.path:
            body = b'{"resourceType": "Medication", "id": "m2"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def two_servers() -> Iterator[tuple[ThreadingHTTPServer, ThreadingHTTPServer]]:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Recorder) for _ in range(2)]
    threads = []
    for server in servers:
        server.authorizations = []  # type: ignore[attr-defined]
        threads.append(threading.Thread(target=server.serve_forever, daemon=True))
        threads[-1].start()
    yield servers[0], servers[1]
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_reviews_backslash_link_sends_nothing_to_the_other_port(templates, two_servers):
    """The review's reproduction: `http://127.0.0.1:<other>\\@127.0.0.1:<ehr>/...` was read as
    the EHR's origin by the check and connected to <other> by requests."""
    ehr, thief = two_servers
    base = f"http://127.0.0.1:{ehr.server_port}/fhir"
    sneaky = f"http://127.0.0.1:{thief.server_port}\\@127.0.0.1:{ehr.server_port}/fhir"
    config = load_config({"ENV": "testing", "FHIR_DEADLINE_SECONDS": 5.0})
    request = resource(
        "MedicationRequest", "rx1", medicationReference={"reference": f"{sneaky}/Medication/m2"}
    )
    prefetch = full_prefetch(templates) | {
        "conditions": searchset(resource("Condition", "c1"), next_url=f"{sneaky}/Condition?page=2"),
        "medicationRequests": searchset(request),
    }
    gathered = gather(templates, CONTEXT, prefetch, base, TOKEN, config)
    assert thief.authorizations == []  # type: ignore[attr-defined]
    assert "outside fhirServer" in gathered.incomplete["conditions"]
    assert "medications" in gathered.incomplete | gathered.unavailable
