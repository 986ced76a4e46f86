"""deploy/nginx.conf as it ships, running in front of `cds-service serve --production`.

The compose stack needs a Docker engine; this runs the same proxy configuration with
Debian's nginx on 127.0.0.1 (only the upstream address and the listen port are replaced).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.conformance import check_response
from tests.support.network import free_port
from tests.support.production_server import production_server, running
from tests.support.scenarios import SCENARIOS, request_of

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
SERVICE = "/cds-services/leukopenia-patient-view"

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("proxy")
    with production_server(workdir) as (backend, _):
        port = free_port()
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        site = site.replace("cds:8080", backend.removeprefix("http://"))
        site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};")
        (workdir / "site.conf").write_text(site)
        temp = workdir / "nginx-temp"
        temp.mkdir()
        # As root, nginx's workers would run as `nobody`, who cannot write the body buffers
        # here; `user` is only allowed (and needed) when the test runs as root.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (workdir / "nginx.conf").write_text(
            f"{user}pid {workdir}/nginx.pid;\nerror_log {workdir}/nginx-error.log;\n"
            "daemon off;\nevents {}\n"
            f"http {{\n access_log off;\n client_body_temp_path {temp}/body;\n"
            f" proxy_temp_path {temp}/proxy;\n include {workdir}/site.conf;\n}}\n"
        )
        base = f"http://127.0.0.1:{port}"
        command = [NGINX, "-p", str(workdir), "-c", str(workdir / "nginx.conf")]
        with running(command, f"{base}/healthz", workdir / "nginx.log"):
            yield base


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
