"""deploy/nginx.conf as it ships, run with Debian's nginx on 127.0.0.1 in front of a
`cds-service serve --production` backend: only the upstream address and the listen lines are
replaced (and, for TLS, the certificate the test CA issued is added to that line's server),
and the certificate of the TLS listener that serves /admin/ is one the test CA issued."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.network import free_port
from tests.support.production_server import running
from tests.support.tls import TestCertificateAuthority

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
)
# Where the compose stack mounts the site's certificate for the 8443 (admin) listener.
SITE_CERTIFICATE = "/etc/nginx/tls/cds.crt"
SITE_KEY = "/etc/nginx/tls/cds.key"


def with_certificate(site: str, tls: TestCertificateAuthority) -> str:
    """deploy/nginx.conf's text with the test CA's server certificate as the site's."""
    assert SITE_CERTIFICATE in site and SITE_KEY in site
    return site.replace(SITE_CERTIFICATE, str(tls.cert_file)).replace(SITE_KEY, str(tls.key_file))


@contextmanager
def running_proxy(
    workdir: Path,
    backend: str,
    tls: TestCertificateAuthority | None = None,
    port: int | None = None,
    admin_port: int | None = None,
) -> Iterator[str]:
    """The proxy's base URL (https when `tls` is given), once it answers /healthz. Its TLS
    listener for /admin/ is on `admin_port` (any free port if None), with `tls`'s certificate
    or else one of a CA made in `workdir/admin-tls`."""
    assert NGINX is not None, "nginx is not installed"
    port = port or free_port()
    listen = f"listen 127.0.0.1:{port}"
    if tls is not None:
        listen += (
            f" ssl;\n    ssl_certificate {tls.cert_file};\n"
            f"    ssl_certificate_key {tls.key_file};\n    ssl_protocols TLSv1.2 TLSv1.3"
        )
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = site.replace("cds:8080", backend.removeprefix("http://"))
    site = site.replace("listen 8080", listen)
    site = site.replace("listen 8443 ssl", f"listen 127.0.0.1:{admin_port or free_port()} ssl")
    site = with_certificate(site, tls or TestCertificateAuthority(workdir / "admin-tls"))
    (workdir / "site.conf").write_text(site)
    temp = workdir / "nginx-temp"
    temp.mkdir(exist_ok=True)
    # As root, nginx's workers would run as `nobody`, who cannot write the body buffers
    # here; `user` is only allowed (and needed) when the test runs as root.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (workdir / "nginx.conf").write_text(
        f"{user}pid {workdir}/nginx.pid;\nerror_log {workdir}/nginx-error.log;\n"
        "daemon off;\nevents {}\n"
        f"http {{\n access_log off;\n client_body_temp_path {temp}/body;\n"
        f" proxy_temp_path {temp}/proxy;\n include {workdir}/site.conf;\n}}\n"
    )
    scheme = "https" if tls else "http"
    base = f"{scheme}://127.0.0.1:{port}"
    command = [NGINX, "-p", str(workdir), "-c", str(workdir / "nginx.conf")]
    verify = str(tls.ca_file) if tls else True
    with running(command, f"{base}/healthz", workdir / "nginx.log", verify=verify):
        yield base
