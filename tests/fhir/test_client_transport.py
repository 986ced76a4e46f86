"""How a FHIR call travels: through requests' transport adapter with what the deployment's
environment sets (proxies, a CA bundle), and nothing else a requests Session would add: no
.netrc credentials in place of the EHR's token, no cookies carried between calls."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import responses

from cds_service.fhir import client
from cds_service.fhir.gather import gather

from .conftest import CONTEXT, FHIR_SERVER, TOKEN, full_prefetch, searchset

FHIR_HEADERS = {"Content-Type": "application/fhir+json"}


@pytest.fixture(autouse=True)
def environment_read_anew() -> Iterator[None]:
    client._proxies.cache_clear()
    client._verify.cache_clear()
    yield
    client._proxies.cache_clear()
    client._verify.cache_clear()


def _gather_conditions(templates, config) -> None:
    """A hook call whose prefetch lacks the conditions, the answer cache off (every call
    really travels)."""
    prefetch = {k: v for k, v in full_prefetch(templates).items() if k != "conditions"}
    gather(templates, CONTEXT, prefetch, FHIR_SERVER, TOKEN, replace(config, fhir_cache_seconds=0))


def _fetch_conditions(templates, config, fhir: responses.RequestsMock) -> responses.Call:
    fhir.get(f"{FHIR_SERVER}/Condition", json=searchset(), headers=FHIR_HEADERS)
    _gather_conditions(templates, config)
    [call] = fhir.calls
    return call


def test_a_netrc_entry_for_the_fhir_host_never_replaces_the_bearer_token(
    templates, config, fhir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine ehr.example.org login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    call = _fetch_conditions(templates, config, fhir)
    assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_the_environment_proxy_is_used_unless_no_proxy_names_the_fhir_host(
    templates, config, fhir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.hospital.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    call = _fetch_conditions(templates, config, fhir)
    assert call.request.req_kwargs["proxies"]["https"] == "http://proxy.hospital.example:3128"

    fhir.calls.reset()
    client._proxies.cache_clear()
    monkeypatch.setenv("NO_PROXY", "ehr.example.org")
    call = _fetch_conditions(templates, config, fhir)
    assert "https" not in call.request.req_kwargs["proxies"]


def test_the_ca_bundle_of_the_environment_verifies_the_fhir_server(
    templates, config, fhir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/hospital/ca.pem")
    call = _fetch_conditions(templates, config, fhir)
    assert call.request.req_kwargs["verify"] == "/etc/hospital/ca.pem"


def test_a_cookie_set_by_one_fhir_answer_is_not_sent_with_the_next_call(
    templates, config, fhir
) -> None:
    fhir.get(
        f"{FHIR_SERVER}/Condition",
        json=searchset(),
        headers=FHIR_HEADERS | {"Set-Cookie": "session=patient-a; Path=/"},
    )
    _gather_conditions(templates, config)
    _gather_conditions(templates, config)
    assert [call.request.headers.get("Cookie") for call in fhir.calls] == [None, None]
