"""The service as a hospital deploys it, end to end.

`cds-service serve --production` with its default worker class (gevent) and worker count,
behind the shipped nginx configuration ending TLS, with the production profile: client JWTs
required and checked against keys fetched from an HTTPS `jwks_url`, the EHR's FHIR server
reached over HTTPS (a test CA made here, trusted through REQUESTS_CA_BUNDLE as a site trusts
its own), PostgreSQL for card history and feedback, Redis for the JWT replay cache.

Every fixture scenario is sent with its prefetch and again with none (the data then fetched
over TLS), and must give the cards the service gives in-process. Tests that only use plain HTTP
or the development server could not see that the gevent workers' HTTPS calls all failed
(issue 22): this stage does.

Where nginx, PostgreSQL or Redis is missing the stage is skipped, unless
AS_DEPLOYED_STAGE_REQUIRED=1 (set by .ci/run), which makes a missing piece a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service import create_app
from cds_service.runtime import runtime
from tests.support.builders import fhir_authorization
from tests.support.conformance import check_response
from tests.support.fhir_stub import FhirStub, served_resources
from tests.support.network import free_port
from tests.support.postgres import postgres_schema, postgres_user
from tests.support.production_server import running, wait_for_workers
from tests.support.proxy import NGINX, running_proxy
from tests.support.redis_server import REDIS_URL, redis_answers
from tests.support.scenarios import SCENARIOS, request_of, service_for
from tests.support.tls import JwksServer, TestCertificateAuthority

ISSUER = "https://ehr.example.org"
# gunicorn_conf.py's default: one more worker than cores, at most 8.
DEFAULT_WORKERS = min((os.cpu_count() or 1) + 1, 8)


def _missing_pieces() -> list[str]:
    missing = [] if NGINX else ["nginx"]
    if postgres_user() is None:
        missing.append("PostgreSQL at 127.0.0.1:5432")
    if not redis_answers():
        missing.append("Redis at 127.0.0.1:6379")
    return missing


@dataclass
class Stage:
    base: str  # the public https URL (nginx)
    ca_file: Path
    signing_key: ec.EllipticCurvePrivateKey
    fhir: FhirStub
    jwks: JwksServer
    server_log: Path
    env: dict[str, str]

    def token(self, service_id: str, key: ec.EllipticCurvePrivateKey | None = None) -> str:
        """A client JWT for `service_id`, signed with the published key unless `key`."""
        now = int(time.time())
        return jwt.encode(
            {
                "iss": ISSUER,
                "aud": f"{self.base}/cds-services/{service_id}",
                "iat": now,
                "exp": now + 300,
                "jti": str(uuid.uuid4()),
            },
            key or self.signing_key,
            algorithm="ES384",
            headers={"kid": "ehr-1", "typ": "JWT"},
        )

    def post(self, path: str, body: Any, token: str | None = None) -> requests.Response:
        service_id = path.split("/")[2]
        bearer = token or self.token(service_id)
        return requests.post(
            f"{self.base}{path}",
            json=body,
            headers={"Authorization": f"Bearer {bearer}"},
            verify=str(self.ca_file),
            timeout=30,
        )


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    missing = _missing_pieces()
    if missing:
        message = f"the as-deployed stage needs {', '.join(missing)}"
        if os.environ.get("AS_DEPLOYED_STAGE_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    workdir = tmp_path_factory.mktemp("as-deployed")
    tls = TestCertificateAuthority(workdir / "tls")
    signing_key = ec.generate_private_key(ec.SECP384R1())
    public_jwk = {
        **jwt.get_algorithm_by_name("ES384").to_jwk(signing_key.public_key(), as_dict=True),
        "kid": "ehr-1",
        "alg": "ES384",
        "use": "sig",
    }
    proxy_port = free_port()
    backend_port = free_port()
    user = postgres_user()
    assert user is not None
    with (
        JwksServer({"keys": [public_jwk]}, tls.server_context()) as jwks,
        FhirStub([], ssl_context=tls.server_context()) as fhir,
        postgres_schema(user) as database_url,
    ):
        issuers = {ISSUER: {"jwks_url": jwks.url, "fhir_servers": [fhir.base_url]}}
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "GUNICORN_"))},
            "CDS_ENV": "production",
            "CDS_PUBLIC_BASE_URL": f"https://127.0.0.1:{proxy_port}",
            "CDS_CORS_ORIGINS": json.dumps(["https://ehr.example.org"]),
            "CDS_PATIENT_KEY_SECRET": secrets.token_urlsafe(48),
            "CDS_TRUSTED_ISSUERS": json.dumps(issuers),
            "CDS_DATABASE_URL": database_url,
            "CDS_REDIS_URL": REDIS_URL,
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
            "REQUESTS_CA_BUNDLE": str(tls.ca_file),
        }
        command = [sys.executable, "-m", "cds_service.cli", "serve", "--production"]
        command += ["--port", str(backend_port)]
        backend = f"http://127.0.0.1:{backend_port}"
        log = workdir / "server.log"
        with running(command, f"{backend}/readyz", log, cwd=workdir, env=env) as server:
            wait_for_workers(server.pid, DEFAULT_WORKERS)
            with running_proxy(workdir, backend, tls, port=proxy_port) as base:
                yield Stage(base, tls.ca_file, signing_key, fhir, jwks, log, env)


def _without_uuids(value: Any) -> Any:
    """A card as JSON, without the identifiers each answer makes anew."""
    if isinstance(value, dict):
        return {k: _without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [_without_uuids(item) for item in value]
    return value


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    database = tmp_path_factory.mktemp("in-process") / "cds.sqlite3"
    app = create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{database}"})
    yield app.test_client()
    runtime(app).close()


def test_start_up_prints_no_warning(stage: Stage) -> None:
    # A MonkeyPatchWarning here meant every HTTPS call of the workers would fail (issue 22);
    # it is now an error that stops the worker, and no other warning is expected either.
    log = stage.server_log.read_text()
    assert "Booting worker" in log
    assert "Warning" not in log and "Traceback" not in log, log


def test_every_scenario_gives_the_in_process_cards_prefetched_and_fetched_over_tls(
    stage: Stage, in_process: Any
) -> None:
    differences: list[str] = []
    fetched = 0
    for scenario in SCENARIOS:
        request = request_of(scenario)
        path = f"/cds-services/{service_for(request['hook'])}"
        expected = in_process.post(path, json=request)
        assert expected.status_code == 200, scenario["name"]
        answers = {"prefetch": stage.post(path, request)}
        if request.get("prefetch"):
            # A token of its own per scenario: the service's FHIR answer cache is keyed by
            # server and token, and the scenarios reuse patient ids.
            token = secrets.token_urlsafe(16)
            stage.fhir.resources = served_resources(request)
            stage.fhir.token = token
            fetching = {k: v for k, v in request.items() if k != "prefetch"}
            fetching |= {"fhirServer": stage.fhir.base_url}
            fetching["fhirAuthorization"] = fhir_authorization(token)
            calls_before = len(stage.fhir.calls)
            answers["fetched over TLS"] = stage.post(path, fetching)
            fetched += len(stage.fhir.calls) > calls_before
        for mode, answer in answers.items():
            assert answer.status_code == 200, (scenario["name"], mode, answer.text)
            check_response(answer.json())
            if _without_uuids(answer.json()) != _without_uuids(expected.get_json()):
                differences.append(f"{scenario['name']} ({mode})")
    assert differences == []
    assert fetched == sum(1 for s in SCENARIOS if request_of(s).get("prefetch"))
    assert stage.jwks.fetches >= 1  # keys came from the HTTPS jwks_url


def test_a_token_signed_by_another_key_is_refused(stage: Stage) -> None:
    service_id = service_for("patient-view")
    forged = stage.token(service_id, key=ec.generate_private_key(ec.SECP384R1()))
    # The service refuses the token before reading the body; it must still read it, or the
    # closing connection resets the proxy's upload and the EHR gets nginx's 502 page.
    request = request_of(SCENARIOS[0])
    request["prefetch"]["padding"] = {"resourceType": "Basic", "id": "x" * 2_000_000}
    answers = [stage.post(f"/cds-services/{service_id}", request, token=forged) for _ in range(20)]
    assert [a.status_code for a in answers] == [401] * 20
    assert all(a.json() == answers[0].json() and "error" in a.json() for a in answers)


def test_metrics_are_scraped_through_the_proxy(stage: Stage) -> None:
    text = requests.get(f"{stage.base}/metrics", verify=str(stage.ca_file), timeout=10).text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cds_hook_request_duration_seconds_count{")
    )
    assert counted >= len(SCENARIOS)


def test_feedback_is_recorded_and_reported(stage: Stage) -> None:
    scenario = next(s for s in SCENARIOS if s["name"] == "sle-azathioprine-febrile-neutropenia")
    request = request_of(scenario)
    path = f"/cds-services/{service_for(request['hook'])}"
    card = stage.post(path, request).json()["cards"][0]
    rule = card["source"]["topic"]["code"]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
        ]
    }
    answer = stage.post(f"{path}/feedback", feedback)
    assert answer.status_code == 200, answer.text
    report = subprocess.run(
        [sys.executable, "-m", "cds_service.cli", "feedback-report", "--format", "json"],
        env=stage.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [row for row in json.loads(report.stdout) if row["rule_id"] == rule]
    assert sum(row["overridden"] for row in rows) == 1
    assert sum(row["shown"] for row in rows) >= 1
