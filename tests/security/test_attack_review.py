"""Findings of the attack review (issue 13 §3, §4): production checks, unknown settings,
worker count, and the fhirServer allowlist with generic 412 reasons."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
import responses
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service import create_app
from cds_service.config import ConfigError, load_config, validate_worker_count
from cds_service.fhir.links import fhir_server_allowed
from cds_service.ops import gunicorn_conf
from cds_service.runtime import runtime
from cds_service.serving import serve_production
from tests.support.builders import fhir_authorization
from tests.support.jwt_clients import (
    BASE_URL,
    ISSUER,
    SigningKey,
    issued_now,
    jwks,
    standard_claims,
)
from tests.support.scenarios import SCENARIOS, request_of
from tests.support.settings import production

SERVICE = "/cds-services/leukopenia-patient-view"
EHR_FHIR = "https://ehr.example.com/fhir"
TOKEN = "ehr-token-9f2c"


@pytest.fixture(autouse=True)
def no_cds_environment(monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith("CDS_")]:
        monkeypatch.delenv(name)


# --- Production checks -----------------------------------------------------------------


@pytest.mark.parametrize(
    "origins",
    [
        ["*", "https://ehr.example.org"],
        ["https://ehr.example.org", "*"],
        "*",
        ["https://*.example.org"],
        ["https://ehr.example.org/"],
        ["null"],
    ],
)
def test_production_refuses_any_cors_wildcard_or_pattern(origins):
    with pytest.raises(ConfigError, match="CDS_CORS_ORIGINS"):
        load_config(production(CORS_ORIGINS=origins))


def test_production_accepts_plain_cors_origins():
    origins = ["https://ehr.example.org", "https://ehr2.example.org:8443"]
    assert load_config(production(CORS_ORIGINS=origins)).cors_origins == tuple(origins)


def test_production_patient_key_secret_needs_32_characters():
    with pytest.raises(ConfigError, match="CDS_PATIENT_KEY_SECRET must have at least 32"):
        load_config(production(PATIENT_KEY_SECRET="x" * 31))
    with pytest.raises(ConfigError, match="CDS_PATIENT_KEY_SECRET"):
        load_config(production(PATIENT_KEY_SECRET="x"))
    assert load_config(production(PATIENT_KEY_SECRET="x" * 32))


def test_production_without_trusted_issuers_says_set_it():
    settings = production()
    del settings["TRUSTED_ISSUERS"]
    with pytest.raises(ConfigError, match="^set CDS_TRUSTED_ISSUERS"):
        load_config(settings)


def test_a_missing_jwks_file_is_one_line_and_exit_2(tmp_path):
    issuers = {ISSUER: {"jwks_file": str(tmp_path / "gone.json")}}
    env = {
        "PATH": "/usr/bin:/bin",
        "CDS_ENV": "production",
        "CDS_PUBLIC_BASE_URL": "https://cds.example.org",
        "CDS_CORS_ORIGINS": '["https://ehr.example.org"]',
        "CDS_PATIENT_KEY_SECRET": "s" * 40,
        "CDS_TRUSTED_ISSUERS": json.dumps(issuers),
    }
    command = [sys.executable, "-m", "cds_service.cli", "serve", "--production", "--port", "9"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "jwks_file" in done.stderr and "gone.json" in done.stderr
    assert "Traceback" not in done.stderr


# --- Unknown CDS_* names ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("CDS_SNOOZE_DAY", "CDS_SNOOZE_DAYS"),
        ("CDS_REDIS", "CDS_REDIS_URL"),
        ("CDS_TRUSTED_ISSUER", "CDS_TRUSTED_ISSUERS"),
        ("CDS_DATABASE_ULR", "CDS_DATABASE_URL"),
    ],
)
def test_a_misspelt_setting_is_refused_with_the_closest_name(monkeypatch, name, closest):
    monkeypatch.setenv(name, "14")
    with pytest.raises(ConfigError, match=f"^{name} is not a setting.*did you mean {closest}\\?"):
        load_config({"ENV": "testing"})


def test_an_unknown_setting_far_from_any_name_is_refused_too(monkeypatch):
    monkeypatch.setenv("CDS_XYZZY", "1")
    with pytest.raises(ConfigError, match="CDS_XYZZY is not a setting"):
        load_config({"ENV": "testing"})


def test_every_documented_setting_is_known(monkeypatch):
    monkeypatch.setenv("CDS_SNOOZE_DAYS", "14")
    assert load_config({"ENV": "testing"}).snooze_days == 14


# --- Worker count: replay cache and database shared by every worker -----------------------

POSTGRES = "postgresql+psycopg://cds@db/cds"


@pytest.mark.parametrize(
    ("workers", "overrides", "refusal"),
    [
        (2, {"DATABASE_URL": POSTGRES}, "CDS_REDIS_URL"),
        (3, {"DATABASE_URL": POSTGRES}, "CDS_REDIS_URL"),
        (2, {"REDIS_URL": "redis://r:6379/0"}, "not SQLite"),
    ],
)
def test_production_refuses_several_workers_that_share_nothing(workers, overrides, refusal):
    config = load_config(production(**overrides))
    with pytest.raises(ConfigError, match=refusal):
        validate_worker_count(config, workers)


def test_one_worker_or_shared_stores_are_accepted():
    validate_worker_count(load_config(production()), 1)
    shared = load_config(production(DATABASE_URL=POSTGRES, REDIS_URL="redis://r:6379/0"))
    validate_worker_count(shared, 4)
    validate_worker_count(load_config({"ENV": "development"}), 4)  # a developer's machine


def _production_environment(monkeypatch, **extra: str) -> None:
    monkeypatch.setenv("CDS_ENV", "production")
    monkeypatch.setenv("CDS_PUBLIC_BASE_URL", "https://cds.example.org")
    monkeypatch.setenv("CDS_CORS_ORIGINS", '["https://ehr.example.org"]')
    monkeypatch.setenv("CDS_PATIENT_KEY_SECRET", "s" * 40)
    monkeypatch.setenv("CDS_TRUSTED_ISSUERS", json.dumps(production()["TRUSTED_ISSUERS"]))
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def test_serve_production_refuses_several_workers_without_redis(monkeypatch, capsys):
    _production_environment(monkeypatch, GUNICORN_WORKERS="3", CDS_DATABASE_URL=POSTGRES)
    assert serve_production("127.0.0.1", 9) == 2
    assert "3 workers need CDS_REDIS_URL" in capsys.readouterr().err


def test_serve_production_refuses_several_workers_on_sqlite(monkeypatch, capsys):
    _production_environment(monkeypatch, GUNICORN_WORKERS="2", CDS_REDIS_URL="redis://r:6379/0")
    assert serve_production("127.0.0.1", 9) == 2
    assert "not SQLite" in capsys.readouterr().err


def test_plain_gunicorn_with_the_config_file_refuses_too(monkeypatch, capsys):
    _production_environment(monkeypatch, CDS_DATABASE_URL=POSTGRES)
    with pytest.raises(SystemExit) as exit_:
        gunicorn_conf.on_starting(
            SimpleNamespace(cfg=SimpleNamespace(workers=4, bind=["127.0.0.1:8080"]))
        )
    assert exit_.value.code == 2
    assert "4 workers need CDS_REDIS_URL" in capsys.readouterr().err
    gunicorn_conf.on_starting(
        SimpleNamespace(cfg=SimpleNamespace(workers=1, bind=["127.0.0.1:8080"]))
    )


def test_deploy_docs_say_what_is_refused():
    text = (Path(__file__).parents[2] / "docs" / "deploy.md").read_text()
    assert "refuses to start with more than one worker" in text


# --- fhirServer allowlist per issuer and tenant, generic 412 reasons ---------------------


def test_allowlist_matches_origin_and_whole_path_segments():
    settings = {"fhir_servers": ["https://ehr.example.com/fhir"]}
    assert fhir_server_allowed("https://ehr.example.com/fhir", settings, None)
    assert fhir_server_allowed("https://ehr.example.com/fhir/", settings, None)
    assert fhir_server_allowed("https://ehr.example.com:443/fhir/r4", settings, None)
    for other in (
        "https://ehr.example.com/fhirx",
        "https://ehr.example.com/",
        "https://ehr.example.com:8443/fhir",
        "http://ehr.example.com/fhir",
        "https://internal.example.com/fhir",
        "https://127.0.0.1/fhir",
        "https://evil.example.net\\@ehr.example.com/fhir",
    ):
        assert not fhir_server_allowed(other, settings, None), other
    assert fhir_server_allowed("https://anything.example.net/x", {}, None)


def test_allowlist_per_tenant():
    settings = {"fhir_servers": {"north": ["https://north.example.com/fhir"]}}
    assert fhir_server_allowed("https://north.example.com/fhir", settings, "north")
    assert not fhir_server_allowed("https://north.example.com/fhir", settings, "south")
    assert not fhir_server_allowed("https://north.example.com/fhir", settings, None)


@pytest.mark.parametrize(
    "rule",
    [
        "https://ehr.example.com/fhir",
        ["http://ehr.example.com/fhir"],
        ["https://ehr.example.com/fhir?x=1"],
        {"t": "https://ehr.example.com/fhir"},
        ["https://a\\@ehr.example.com/fhir"],
    ],
)
def test_bad_allowlists_are_refused_at_start_up(rule):
    issuers = {ISSUER: {"jwks_url": f"{ISSUER}/jwks.json", "fhir_servers": rule}}
    with pytest.raises(ConfigError, match="fhir_servers"):
        load_config(production(TRUSTED_ISSUERS=issuers))


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey(ec.generate_private_key(ec.SECP384R1()), "k1", "ES384")


def _app(tmp_path: Path, key: SigningKey, **issuer: Any):
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks(key)))
    return create_app(
        production(
            DATABASE_URL=f"sqlite:///{tmp_path}/cds.sqlite3",
            PUBLIC_BASE_URL=BASE_URL,
            TRUSTED_ISSUERS={ISSUER: {"jwks_file": str(jwks_file), **issuer}},
        )
    )


def _signed(key: SigningKey, tenant: str | None = None) -> dict[str, str]:
    claims = {**standard_claims(), **issued_now(), "iss": ISSUER, "aud": BASE_URL + SERVICE}
    if tenant:
        claims["tenant"] = tenant
    return {"Authorization": f"Bearer {key.sign(claims)}"}


def _needs_fetching(fhir_server: str) -> dict[str, Any]:
    body = request_of(next(s for s in SCENARIOS if s["name"] == "sle-severe-neutropenia-afebrile"))
    body["prefetch"] = {}  # everything comes from fhirServer
    body["fhirServer"] = fhir_server
    body["fhirAuthorization"] = fhir_authorization(TOKEN)
    return body


@pytest.fixture
def anywhere():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(re.compile(r".*"), status=401)
        yield mock


def test_a_fhir_server_outside_the_allowlist_is_never_called(tmp_path, signing_key, anywhere):
    app = _app(tmp_path, signing_key, fhir_servers=[EHR_FHIR])
    body = _needs_fetching("https://10.0.0.7:8443/fhir")
    response = app.test_client().post(SERVICE, json=body, headers=_signed(signing_key))
    assert response.status_code == 412
    assert response.get_json() == {"error": "required FHIR data is unavailable"}
    assert len(anywhere.calls) == 0
    runtime(app).storage.close()


def test_a_fhir_server_of_another_tenant_is_never_called(tmp_path, signing_key, anywhere):
    app = _app(tmp_path, signing_key, fhir_servers={"north": [EHR_FHIR]})
    client = app.test_client()
    south = client.post(
        SERVICE, json=_needs_fetching(EHR_FHIR), headers=_signed(signing_key, "south")
    )
    assert south.status_code == 412
    assert len(anywhere.calls) == 0
    north = client.post(
        SERVICE, json=_needs_fetching(EHR_FHIR), headers=_signed(signing_key, "north")
    )
    assert north.status_code == 412  # called, refused by the mock's 401 ...
    assert len(anywhere.calls) >= 1
    # ... and the caller is not told what answered there (the log is).
    assert north.get_json() == {"error": "required FHIR data is unavailable"}
    runtime(app).storage.close()


def test_412_reasons_stay_in_the_log_in_production(tmp_path, signing_key, anywhere, caplog):
    caplog.set_level(logging.INFO)
    app = _app(tmp_path, signing_key)
    body = _needs_fetching("https://internal.example.net:8443/fhir")
    response = app.test_client().post(SERVICE, json=body, headers=_signed(signing_key))
    assert response.status_code == 412
    assert response.get_json() == {"error": "required FHIR data is unavailable"}
    assert "401" not in response.get_data(as_text=True)
    logged = [r for r in caplog.records if r.getMessage() == "precondition failed"]
    assert "HTTP 401" in logged[0].reason
    runtime(app).storage.close()


def test_cards_do_not_tell_what_answers_at_the_fhir_server_in_production(
    tmp_path, signing_key, anywhere
):
    """A partial prefetch still gets its cards, and the DATA_QUALITY card names the missing
    data; in production it does not say why ("HTTP 401"), which would make cards an oracle for
    what stands at a fhirServer of the caller's choosing."""
    app = _app(tmp_path, signing_key)
    body = request_of(next(s for s in SCENARIOS if s["name"] == "sle-severe-neutropenia-afebrile"))
    del body["prefetch"]["conditions"]
    body["fhirServer"] = "https://internal.example.net:8443/fhir"
    body["fhirAuthorization"] = fhir_authorization(TOKEN)
    response = app.test_client().post(SERVICE, json=body, headers=_signed(signing_key))
    assert response.status_code == 200
    cards = {c["source"]["topic"]["code"]: c for c in response.get_json()["cards"]}
    detail = cards["DATA_QUALITY"]["detail"]
    assert "Data not available from the EHR: diagnoses (could not be retrieved)" in detail
    assert len(anywhere.calls) >= 1
    # Every text a clinician or the EHR reads (not the random uuids and times, which may hold
    # the digits "401" by chance: the test once failed on a card uuid).
    words = [
        text
        for card in cards.values()
        for text in (
            card["summary"],
            card.get("detail", ""),
            *(s["label"] for s in card.get("suggestions", [])),
            *(r.get("display", "") for r in card.get("overrideReasons", [])),
        )
    ]
    assert words and not [text for text in words if "401" in text]
    runtime(app).storage.close()


@pytest.mark.parametrize("jti", ["\ud800", "a\udc00", "line\nbreak", "\x00"])
def test_a_signed_token_with_an_unprintable_jti_is_a_401_not_a_500(tmp_path, signing_key, jti):
    """Found by the seeded fuzz (variants 6581, 7556, 9644 of 10,000): a lone surrogate in a
    validly signed jti failed hashing for the replay cache."""
    app = _app(tmp_path, signing_key)
    claims = {**issued_now(), "iss": ISSUER, "aud": BASE_URL + SERVICE, "jti": jti}
    payload = json.dumps(claims).encode()  # ASCII escapes: "\ud800" stays a lone surrogate
    token = jwt.api_jws.PyJWS().encode(
        payload, signing_key.private_key, algorithm="ES384", headers={"kid": signing_key.kid}
    )
    response = app.test_client().post(
        SERVICE, json={}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert response.is_json
    runtime(app).storage.close()
