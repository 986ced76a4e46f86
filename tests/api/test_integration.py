"""The whole app in production settings: a signed EHR gets its cards, an unsigned caller gets
401; feedback closes the loop (snooze, report)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec

from cds_service import create_app
from cds_service.governance.report import report_main
from cds_service.runtime import runtime
from tests.support.jwt_clients import SigningKey, issued_now, jwks, standard_claims
from tests.support.scenarios import SCENARIOS, request_of
from tests.support.settings import production

ISSUER = "https://ehr.example.com"
BASE = "https://cds.example.org"
SERVICE = "/cds-services/leukopenia-patient-view"


def scenario(name):
    return request_of(next(s for s in SCENARIOS if s["name"] == name))


def test_production_app_serves_signed_clients_only(tmp_path):
    key = SigningKey(ec.generate_private_key(ec.SECP384R1()), "k1", "ES384")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks(key)))
    app = create_app(
        production(
            DATABASE_URL=f"sqlite:///{tmp_path}/cds.sqlite3",
            PUBLIC_BASE_URL=BASE,
            TRUSTED_ISSUERS={ISSUER: {"jwks_file": str(jwks_file)}},
        )
    )
    client = app.test_client()
    body = scenario("sle-severe-neutropenia-afebrile")

    def signed(audience: str) -> dict[str, str]:
        token = key.sign({**standard_claims(), **issued_now(), "iss": ISSUER, "aud": audience})
        return {"Authorization": f"Bearer {token}"}

    assert client.post(SERVICE, json=body).status_code == 401
    wrong_audience = client.post(SERVICE, json=body, headers=signed(f"{BASE}/cds-services"))
    assert wrong_audience.status_code == 401
    assert wrong_audience.headers["WWW-Authenticate"].startswith("Bearer")
    answered = client.post(SERVICE, json=body, headers=signed(f"{BASE}{SERVICE}"))
    assert answered.status_code == 200
    assert [c["source"]["topic"]["code"] for c in answered.get_json()["cards"]] == [
        "NEUTROPENIA_SEVERE"
    ]
    discovery = client.get("/cds-services", headers=signed(f"{BASE}/cds-services"))
    assert discovery.status_code == 200
    runtime(app).storage.close()


def test_overridden_card_is_snoozed_recorded_and_reported(tmp_path):
    database = f"sqlite:///{tmp_path}/cds.sqlite3"
    app = create_app({"ENV": "testing", "DATABASE_URL": database})
    client = app.test_client()
    body = scenario("sle-moderate-neutropenia")
    [card] = client.post(SERVICE, json=body).get_json()["cards"]
    assert card["indicator"] == "warning"
    reason = next(r for r in card["overrideReasons"] if r["code"] == "already-addressed")
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": reason},
                "outcomeTimestamp": datetime.now(UTC).isoformat(),
            }
        ]
    }
    runtime(app).storage.flush()
    assert client.post(f"{SERVICE}/feedback", json=feedback).status_code == 200
    assert client.post(SERVICE, json=body).get_json() == {"cards": []}  # snoozed
    critical = scenario("sle-severe-neutropenia-afebrile")
    [critical_card] = client.post(SERVICE, json=critical).get_json()["cards"]
    feedback["feedback"][0]["card"] = critical_card["uuid"]
    runtime(app).storage.flush()
    client.post(f"{SERVICE}/feedback", json=feedback)
    assert client.post(SERVICE, json=critical).get_json()["cards"]  # critical never snoozed
    runtime(app).storage.flush()
    report = json.loads(report_main(database, "json"))
    runtime(app).storage.close()
    moderate = [row for row in report if row["rule_id"] == "NEUTROPENIA_MODERATE"]
    assert moderate and moderate[0]["overridden"] == 1
    assert "already-addressed" in json.dumps(moderate)
