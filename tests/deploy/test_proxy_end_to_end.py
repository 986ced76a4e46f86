"""deploy/nginx.conf as it ships, running in front of `cds-service serve --production`.

The compose stack needs a Docker engine; this runs the same proxy configuration with
Debian's nginx on 127.0.0.1 (only the upstream address and the listen port are replaced).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.support.conformance import check_response
from tests.support.network import free_port
from tests.support.production_server import production_server
from tests.support.proxy import NGINX, running_proxy
from tests.support.scenarios import SCENARIOS, request_of

SERVICE = "/cds-services/leukopenia-patient-view"

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """The plain and the TLS (admin) listener of one nginx in front of one production server,
    and the CA file that verifies the TLS listener."""
    workdir = tmp_path_factory.mktemp("proxy")
    admin_port = free_port()
    with (
        production_server(workdir) as (backend, _),
        running_proxy(workdir, backend, admin_port=admin_port) as base,
    ):
        yield base, f"https://127.0.0.1:{admin_port}", str(workdir / "admin-tls" / "ca.pem")


@pytest.fixture(scope="module")
def proxy(proxies: tuple[str, str, str]) -> str:
    return proxies[0]


def test_hook_calls_pass_through_the_proxy(proxy):
    scenario = next(s for s in SCENARIOS if s["name"] == "sle-azathioprine-febrile-neutropenia")
    for _ in range(3):  # several calls over the proxy's keep-alive client connection
        response = requests.post(f"{proxy}{SERVICE}", json=request_of(scenario), timeout=20)
        assert response.status_code == 200
        check_response(response.json())
        assert "FEBRILE_NEUTROPENIA" in {
            c["source"]["topic"]["code"] for c in response.json()["cards"]
        }
    assert requests.get(f"{proxy}/readyz", timeout=5).json()["status"] == "ok"
    assert "Server" not in response.headers or "nginx/" not in response.headers["Server"]


def test_the_proxy_refuses_oversized_bodies_before_the_service(proxy):
    response = requests.post(
        f"{proxy}{SERVICE}",
        data=b"x" * (8 * 1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
        timeout=20,
    )
    assert response.status_code == 413


def test_metrics_are_served_to_the_local_scraper(proxy):
    response = requests.get(f"{proxy}/metrics", timeout=5)
    assert response.status_code == 200
    assert "cds_hook_request_duration_seconds" in response.text


def test_the_dashboard_is_served_over_tls_only(proxies):
    """Issue 24: its HTTP Basic password never crosses the network in clear."""
    plain, tls, certificate = proxies
    refused = requests.get(f"{plain}/admin/", timeout=5)
    assert refused.status_code == 403
    assert "https only" in refused.json()["error"]
    # Over TLS the request reaches the service: 401 asking for the password, or 404 when
    # the dashboard is off (no CDS_ADMIN_PASSWORD), a JSON answer either way.
    reached = requests.get(f"{tls}/admin/", timeout=5, verify=certificate)
    assert reached.status_code in (401, 404)
    assert reached.headers["Content-Type"].startswith("application/json")
    assert requests.get(f"{tls}/healthz", timeout=5, verify=certificate).json() == {"status": "ok"}
