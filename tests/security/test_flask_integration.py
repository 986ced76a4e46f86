"""init_app on a small Flask app: which paths need a token, what a refused call gets back,
and what the development and production settings let through."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from flask import Flask, g, jsonify

from cds_service.security import init_app
from tests.support.jwt_clients import BASE_URL, ISSUER, SERVICE_URL, issued_now, make_config

DISCOVERY_URL = f"{BASE_URL}/cds-services"
SERVICE_PATH = "/cds-services/leukopenia-patient-view"
PRODUCTION = {
    "ENV": "production",
    "PATIENT_KEY_SECRET": "a-real-secret-of-at-least-32-characters",
    "CORS_ORIGINS": ["https://ehr.example.com"],
    "PUBLIC_BASE_URL": BASE_URL,
}


def make_app(config) -> Flask:
    app = Flask(__name__)
    init_app(app, config)

    def caller():
        return g.cds_client.issuer if g.cds_client else None

    @app.get("/cds-services")
    def discovery():
        return jsonify(services=[], caller=caller())

    @app.post("/cds-services/<service_id>")
    def service(service_id):
        return jsonify(cards=[], caller=caller())

    @app.post("/cds-services/<service_id>/feedback")
    def feedback(service_id):
        return jsonify(caller=caller())

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return app


@pytest.fixture
def production_config(pinned_jwks_file):
    return make_config(**PRODUCTION, TRUSTED_ISSUERS={ISSUER: {"jwks_file": pinned_jwks_file}})


@pytest.fixture
def production_client(production_config):
    return make_app(production_config).test_client()


@pytest.fixture
def development_client(pinned_config):
    return make_app(replace(pinned_config, public_base_url=BASE_URL)).test_client()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/cds-services"),
        ("post", SERVICE_PATH),
        ("post", SERVICE_PATH + "/feedback"),
        ("post", "/cds-services/no-such-service"),
    ],
)
def test_production_refuses_calls_without_a_token(production_client, method, path):
    response = getattr(production_client, method)(path, json={})

    assert response.status_code == 401
    assert response.get_json() == {"error": "unauthorized"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path", "aud"),
    [
        ("get", "/cds-services", DISCOVERY_URL),
        ("post", SERVICE_PATH, SERVICE_URL),
        ("post", SERVICE_PATH + "/feedback", SERVICE_URL + "/feedback"),
        ("post", SERVICE_PATH + "/feedback", SERVICE_URL),
    ],
)
def test_production_accepts_a_token_for_the_url_called(
    production_client, es384_key, method, path, aud
):
    response = getattr(production_client, method)(
        path, json={}, headers=auth(es384_key.sign({"aud": aud, **issued_now()}))
    )

    assert response.status_code == 200
    assert response.get_json()["caller"] == ISSUER


def test_a_service_token_does_not_open_discovery(production_client, es384_key):
    response = production_client.get("/cds-services", headers=auth(es384_key.sign(issued_now())))
    assert response.status_code == 401


def test_cors_preflight_and_other_paths_need_no_token(production_client):
    preflight = production_client.options(
        SERVICE_PATH,
        headers={"Origin": "https://ehr.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert production_client.get("/healthz").status_code == 200


def test_development_accepts_calls_without_a_token(development_client):
    response = development_client.post(SERVICE_PATH, json={})
    assert response.status_code == 200
    assert response.get_json()["caller"] is None


def test_development_still_verifies_a_token_that_is_sent(development_client, es384_key):
    expired = es384_key.sign({"iat": 1_000_000_000, "exp": 1_000_000_300})
    for token in ("garbage", expired):
        assert development_client.post(SERVICE_PATH, headers=auth(token)).status_code == 401

    valid = development_client.post(SERVICE_PATH, headers=auth(es384_key.sign(issued_now())))
    assert valid.status_code == 200
    assert valid.get_json()["caller"] == ISSUER


def test_development_warns_once_at_start_up_that_tokens_are_optional(pinned_config, caplog):
    with caplog.at_level(logging.WARNING, logger="cds_service.security"):
        client = make_app(pinned_config).test_client()
        client.post(SERVICE_PATH, json={})
        client.get("/cds-services")

    warnings = [r for r in caplog.records if getattr(r, "event", None) == "auth_not_required"]
    assert len(warnings) == 1


def test_audience_is_the_request_url_without_a_public_base_url(pinned_config, es384_key):
    client = make_app(pinned_config).test_client()
    local = es384_key.sign(
        {"aud": "http://localhost/cds-services/leukopenia-patient-view", **issued_now()}
    )
    public = es384_key.sign({"aud": SERVICE_URL, **issued_now()})

    assert client.post(SERVICE_PATH, json={}, headers=auth(local)).status_code == 200
    assert client.post(SERVICE_PATH, json={}, headers=auth(public)).status_code == 401


def test_replay_store_outage_answers_503(pinned_config, es384_key):
    config = replace(pinned_config, public_base_url=BASE_URL, redis_url="redis://127.0.0.1:1/0")
    client = make_app(config).test_client()
    response = client.post(SERVICE_PATH, headers=auth(es384_key.sign(issued_now())))
    assert response.status_code == 503


def test_tokens_never_reach_the_logs(production_client, es384_key, caplog):
    valid = es384_key.sign(issued_now())
    tampered = valid[:-8] + "AAAAAAAA"
    tokens = [
        valid,
        tampered,
        es384_key.sign({"aud": "https://elsewhere.example", **issued_now()}),
        es384_key.sign(issued_now(), jku="https://evil.example/jwks.json"),
        "not.a.jwt",
    ]

    with caplog.at_level(logging.DEBUG):
        for token in [*tokens, valid]:  # the second `valid` is a replay
            production_client.post(SERVICE_PATH, json={}, headers=auth(token))

    assert any(getattr(r, "event", None) == "auth_rejected" for r in caplog.records)
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for token in tokens:
        for part in token.split("."):
            if len(part) > 8:
                assert part not in logged
