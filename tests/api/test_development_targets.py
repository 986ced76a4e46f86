"""Issue 24: development settings are no open relay. A fhirServer on a link-local or private
address (the cloud metadata address, the office network) is refused with 412 and never called,
unless CDS_FHIR_ALLOW_PRIVATE_HOSTS lists its host; loopback (a local test server) and public
servers are read as before."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import responses

from cds_service import create_app
from cds_service.config import ConfigError, load_config
from cds_service.fhir.targets import refused_in_development
from tests.support.scenarios import SCENARIOS, request_of
from tests.support.settings import production

SERVICE = "/cds-services/leukopenia-patient-view"
REFUSED = [
    "http://169.254.169.254/latest/meta-data",
    "http://[fe80::1]/fhir",
    "http://[::ffff:169.254.169.254]/fhir",
    "http://10.0.0.5/fhir",
    "http://172.16.3.4:8080/fhir",
    "http://192.168.1.1/fhir",
    "http://100.64.0.1/fhir",
    "http://0.0.0.0:8080/fhir",
    "http://[fd00::1]/fhir",
]


@pytest.fixture
def anywhere() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(re.compile(r".*"), json={"resourceType": "Bundle", "type": "searchset"})
        yield mock


def _request_without_prefetch(fhir_server: str) -> dict:
    scenario = next(s for s in SCENARIOS if s["name"] == "sle-severe-neutropenia-afebrile")
    body = request_of(scenario)
    body.pop("prefetch", None)
    body["fhirServer"] = fhir_server
    return body


@pytest.mark.parametrize("fhir_server", REFUSED)
def test_development_refuses_private_and_link_local_fhir_servers(tmp_path, anywhere, fhir_server):
    app = create_app({"ENV": "development", "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"})
    response = app.test_client().post(SERVICE, json=_request_without_prefetch(fhir_server))
    assert response.status_code == 412
    assert "CDS_FHIR_ALLOW_PRIVATE_HOSTS" in response.json["error"]
    assert len(anywhere.calls) == 0


def test_a_listed_host_is_read(tmp_path, anywhere):
    app = create_app(
        {
            "ENV": "development",
            "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
            "FHIR_ALLOW_PRIVATE_HOSTS": ["10.0.0.5"],
        }
    )
    app.test_client().post(SERVICE, json=_request_without_prefetch("http://10.0.0.5/fhir"))
    assert len(anywhere.calls) > 0


@pytest.mark.parametrize(
    "fhir_server",
    [
        "http://127.0.0.1:8090/fhir",
        "http://localhost:8090/fhir",
        "http://[::1]/fhir",
        "https://93.184.215.14/fhir",
        "https://unresolvable.invalid/fhir",
    ],
)
def test_loopback_public_and_unresolvable_servers_are_not_refused(fhir_server):
    assert refused_in_development(fhir_server, ()) is None


def test_a_name_resolving_to_a_private_address_is_refused(monkeypatch):
    def resolve(host, port, **kwargs):
        return [(2, 1, 6, "", ("10.1.2.3", port))]

    monkeypatch.setattr("socket.getaddrinfo", resolve)
    assert refused_in_development("http://intranet.example.org/fhir", ())
    assert (
        refused_in_development("http://intranet.example.org/fhir", ("intranet.example.org",))
        is None
    )
    assert refused_in_development("http://intranet.example.org/fhir", ("*",)) is None


def test_the_setting_is_for_development_only():
    with pytest.raises(ConfigError, match="CDS_FHIR_ALLOW_PRIVATE_HOSTS"):
        load_config(production(FHIR_ALLOW_PRIVATE_HOSTS=["fhir"]))
    with pytest.raises(ConfigError, match="CDS_FHIR_ALLOW_PRIVATE_HOSTS"):
        load_config({"FHIR_ALLOW_PRIVATE_HOSTS": "fhir"})
