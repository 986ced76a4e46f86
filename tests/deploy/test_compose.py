"""Static checks of the container files (no Docker engine needed): docker-compose.yml,
the dev override, .env.example, the Dockerfile, .dockerignore, deploy/nginx.conf and the
package list `pip install .` builds the image from."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds_service import config as cds_config
from cds_service.trusted_issuers import SANDBOX_ISSUER
from tests.support.proxy import with_certificate
from tests.support.tls import TestCertificateAuthority

ROOT = Path(__file__).resolve().parents[2]
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def _dotenv(path: Path) -> dict[str, str]:
    """The subset of Compose's .env syntax .env.example uses: KEY=value, 'literal', comments."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=value: {line!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME:?error} with `env` as the .env file."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"${{{name}}} is not set: {arg or 'no default'}")

    return _VARIABLE.sub(replace, value)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    assert isinstance(environment, dict), "environment as a mapping"
    return {str(k): str(v) for k, v in environment.items()}


def _cds_settings(environment: dict[str, str], dotenv: dict[str, str]) -> cds_config.Settings:
    """What load_config() would build in the container (ConfigError naming a bad setting)."""
    interpolated = {name: _interpolate(raw, dotenv) for name, raw in environment.items()}
    return cds_config.load_config(environ=interpolated)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _yaml("docker-compose.yml")


@pytest.fixture(scope="module")
def dotenv() -> dict[str, str]:
    return _dotenv(ROOT / ".env.example")


def test_services_and_their_images(compose: dict[str, Any]) -> None:
    assert "version" not in compose  # the Compose spec has no version key
    services = compose["services"]
    assert set(services) == {"cds", "proxy", "postgres", "redis", "fhir", "fhir-loader"}
    assert services["cds"]["build"] == "."
    assert services["proxy"]["image"] == "nginx:stable-alpine"
    assert services["postgres"]["image"] == "postgres:16-alpine"
    assert services["redis"]["image"] == "redis:7-alpine"
    assert services["fhir"]["image"] == "hapiproject/hapi:latest"
    # Issue 24: HAPI (writable, test data) on the internal network only, never on 0.0.0.0.
    assert "ports" not in services["fhir"]
    assert services["fhir"]["networks"] == ["backend"]
    assert compose["networks"]["backend"]["internal"] is True
    dev_fhir = _yaml("docker-compose.dev.yml")["services"]["fhir"]
    assert all(port.startswith("127.0.0.1:") for port in dev_fhir["ports"])
    assert _environment(services["fhir"])["hapi.fhir.fhir_version"] == "R4"
    # The loader runs the script from the service's own image, once.
    loader = services["fhir-loader"]
    assert loader["image"] == services["cds"]["image"] and loader["build"] == "."
    assert loader["command"][:2] == ["python", "deploy/load_fixtures.py"]
    assert "http://fhir:8080/fhir" in loader["command"]
    assert loader["restart"] == "no"
    assert "fhir" in loader["depends_on"]


def test_cds_runs_replicated_behind_the_proxy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cds = services["cds"]
    assert cds["deploy"]["replicas"] >= 2
    assert "ports" not in cds and "container_name" not in cds  # replicas cannot share them
    assert cds["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    proxy = services["proxy"]
    assert proxy["ports"] == ["8080:8080", "8443:8443"]  # 8443: TLS, the dashboard's only way
    assert proxy["depends_on"]["cds"]["condition"] == "service_healthy"
    mounts = [v.split(":") for v in proxy["volumes"]]
    assert ["./deploy/nginx.conf", "/etc/nginx/conf.d/default.conf", "ro"] in mounts
    assert ["./deploy/tls", "/etc/nginx/tls", "ro"] in mounts
    assert _environment(cds)["CDS_BEHIND_PROXY"] == "true"  # it listens on 0.0.0.0
    assert "postgres-data" in compose["volumes"]
    assert any(v.startswith("postgres-data:") for v in services["postgres"]["volumes"])


@pytest.mark.parametrize("name", ["proxy", "postgres", "redis"])
def test_healthchecks(compose: dict[str, Any], name: str) -> None:
    check = compose["services"][name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert check["interval"] and check["retries"] >= 3


def test_cds_environment_names_are_settings(compose: dict[str, Any]) -> None:
    for service in ("cds", "fhir-loader"):
        for name in _environment(compose["services"][service]):
            if name.startswith(("CDS_", "GUNICORN_")):
                assert name in cds_config.VARIABLES, name
    for name in _dotenv(ROOT / ".env.example"):
        if name.startswith(("CDS_", "GUNICORN_")):
            assert name in cds_config.VARIABLES, name
    dev = _yaml("docker-compose.dev.yml")
    for name in _environment(dev["services"]["cds"]):
        assert name in cds_config.VARIABLES, name


def test_cds_environment_as_brief(compose: dict[str, Any], dotenv: dict[str, str]) -> None:
    environment = {
        k: _interpolate(v, dotenv) for k, v in _environment(compose["services"]["cds"]).items()
    }
    assert environment["CDS_ENV"] == "production"
    assert environment["CDS_DATABASE_URL"] == "postgresql+psycopg://cds:cds@postgres:5432/cds"
    assert environment["CDS_REDIS_URL"] == "redis://redis:6379/0"
    for name in ("PUBLIC_BASE_URL", "CORS_ORIGINS", "PATIENT_KEY_SECRET", "TRUSTED_ISSUERS"):
        raw = _environment(compose["services"]["cds"])[f"CDS_{name}"]
        assert raw == f"${{CDS_{name}:?set CDS_{name} in .env}}"  # a secret, from .env only


def test_every_variable_comes_from_env_example_or_has_a_default(
    compose: dict[str, Any], dotenv: dict[str, str]
) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for match in _VARIABLE.finditer(text):
        assert match["name"] in dotenv or match["op"] in (":-", "-"), match[0]


def test_the_production_container_would_start(
    compose: dict[str, Any], dotenv: dict[str, str]
) -> None:
    settings = _cds_settings(_environment(compose["services"]["cds"]), dotenv)
    assert settings.env == "production"
    assert settings.requires_token
    assert settings.cors_origins == ("https://ehr.example.org",)
    assert settings.patient_key_secret != cds_config.Settings.patient_key_secret
    assert settings.trusted_issuers and SANDBOX_ISSUER not in settings.trusted_issuers


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CDS_TRUSTED_ISSUERS", "{}", "at least one CDS client"),
        ("CDS_PUBLIC_BASE_URL", "http://cds.example.org", "PUBLIC_BASE_URL"),
        ("CDS_CORS_ORIGINS", '["*"]', "CORS_ORIGINS"),
        ("CDS_PATIENT_KEY_SECRET", "development-only-secret", "PATIENT_KEY_SECRET"),
    ],
)
def test_the_check_would_catch_a_bad_env_file(
    compose: dict[str, Any], dotenv: dict[str, str], name: str, value: str, message: str
) -> None:
    with pytest.raises(cds_config.ConfigError, match=message):
        _cds_settings(_environment(compose["services"]["cds"]), {**dotenv, name: value})


def test_the_dev_override_allows_the_http_hapi_demo(
    compose: dict[str, Any], dotenv: dict[str, str]
) -> None:
    dev = _yaml("docker-compose.dev.yml")
    environment = {
        **_environment(compose["services"]["cds"]),
        **_environment(dev["services"]["cds"]),
    }
    settings = _cds_settings(environment, dotenv)
    assert settings.development
    assert settings.fhir_allow_unauthenticated is True
    assert settings.fhir_allow_private_hosts == ("fhir",)  # HAPI by its internal name


def _dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile() -> None:
    instructions = _dockerfile()
    first = instructions[0]
    assert first == ("FROM", "python:3.11-slim")
    keywords = [k for k, _ in instructions]
    user = [v for k, v in instructions if k == "USER"]
    assert user and user[-1] not in ("root", "0")
    # The user switch comes after every RUN (installs run as root, the server does not).
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert ("EXPOSE", "8080") in instructions
    healthcheck = next(v for k, v in instructions if k == "HEALTHCHECK")
    assert "python" in healthcheck and "http://127.0.0.1:8080/healthz" in healthcheck
    assert "curl" not in healthcheck
    cmd = next(v for k, v in instructions if k == "CMD")
    assert cmd == '["cds-service", "serve", "--production", "--host", "0.0.0.0", "--port", "8080"]'
    runs = " ".join(v for k, v in instructions if k == "RUN")
    assert "pip install ." in runs and "[test]" not in runs
    env = " ".join(v for k, v in instructions if k == "ENV")
    assert "PROMETHEUS_MULTIPROC_DIR=/var/lib/cds-service/metrics" in env
    assert "/var/lib/cds-service" in runs and "chown" in runs  # writable by the user
    copied = [v.split()[0] for k, v in instructions if k == "COPY"]
    assert "tests/" not in copied and "." not in copied
    for source in copied:
        assert (ROOT / source).exists(), source


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    for entry in (
        ".venv",
        ".git",
        ".pytest_cache",
        ".ruff_cache",
        "instance",
        "benchmarks/results",
    ):
        assert entry in ignored, entry
    assert ".env" in ignored  # secrets stay out of the image
    copied = {v.split()[0].rstrip("/") for k, v in _dockerfile() if k == "COPY"}
    assert not copied & ignored


def test_nginx_conf_balances_to_the_cds_service() -> None:
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(r"upstream\s+(\w+)\s*\{[^}]*server\s+cds:8080", text)
    upstream = re.search(r"upstream\s+(\w+)", text)
    assert upstream and f"proxy_pass http://{upstream[1]};" in text
    assert re.search(r"listen\s+8080;", text)
    assert re.search(r"client_max_body_size\s+8m;", text)
    for directive in ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout"):
        assert re.search(rf"{directive}\s+\d+s;", text), directive
    assert text.count("{") == text.count("}")


def test_pip_install_packages_every_module() -> None:
    """The image runs a non-editable install: every package folder must be listed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(project["packages"])
    for init in (ROOT / "cds_service").rglob("__init__.py"):
        package = ".".join(init.parent.relative_to(ROOT).parts)
        assert package in listed, f"{package} missing from [tool.setuptools] packages"
    for package, folder in project.get("package-dir", {}).items():
        assert package in listed and (ROOT / folder / "__init__.py").exists()


def test_nginx_accepts_the_conf(tmp_path: Path) -> None:
    """`nginx -t` on deploy/nginx.conf (the `cds` host replaced, it resolves only in compose)."""
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if nginx is None:
        pytest.skip("nginx is not installed")
    site = (ROOT / "deploy" / "nginx.conf").read_text().replace("cds:8080", "127.0.0.1:8080")
    # The TLS listener's certificate is the site's (deploy/tls/): a test CA's here.
    site = with_certificate(site, TestCertificateAuthority(tmp_path / "tls"))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n include {tmp_path}/site.conf;\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
@pytest.mark.parametrize(
    "files", [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.dev.yml"]]
)
def test_docker_compose_accepts_the_files(files: list[str]) -> None:
    """`docker-compose config` (Debian's, no engine needed) parses and validates the files."""
    arguments = [part for name in files for part in ("-f", name)]
    result = subprocess.run(
        ["docker-compose", *arguments, "--env-file", ".env.example", "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
