"""Every endpoint, with client JWTs required, answers hostile input with JSON and never a 5xx
(issue 13 "done when": 10,000 seeded variants).

Variants are made from the real scenario requests and feedback bodies by seeded mutations
(values replaced by nasty ones, keys dropped or added, bytes corrupted, tokens missing,
forged, expired, replayed or for another audience), while a mocked FHIR server answers every
call badly in its own seeded ways. Variant i depends only on SEED and i, so a failure is
replayed by its number alone.

The normal run tries FUZZ_VARIANTS variants (default 400, some seconds); the full run is
`FUZZ_VARIANTS=10000 pytest tests/security/test_fuzz_endpoints.py` (minutes).
/metrics (Prometheus text) and /admin/ (the dashboard's HTML page) are not JSON by design and
are left out; /admin/api/stats is in.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import random
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import pytest
import responses
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.runtime import runtime
from tests.support.jwt_clients import BASE_URL, ISSUER, SigningKey, issued_now, jwks
from tests.support.scenarios import SCENARIOS, request_of, service_for
from tests.support.settings import production

SEED = 20261125
VARIANTS = int(os.environ.get("FUZZ_VARIANTS", "400"))
ADMIN_PASSWORD = "fuzzing-admin-password"

NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udc00x",
    "\n127.0.0.1 forged line",
    "\u2028",
    "é" * 300,
    "x" * 5000,
    "Patient/../../etc/passwd",
    "Medication/m1/_history/1",
    "https://evil.example.net\\@ehr.example.org/fhir",
    "https://evil.example.net#@ehr.example.org/fhir",
    "http://127.0.0.1:1/fhir",
    "https://[::ffff:127.0.0.1]/fhir",
    "//evil.example.net/fhir",
    "HTTPS://EHR.example.org/fhir",
    "2025-02-30",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "2025-03-03T09:00:00Z\n",
    "http://loinc.org|26464-8",
    "10*9/L",
    "{cells}/uL",
    "NaN",
    "-Infinity",
    "1e309",
    "<script>alert(1)</script>",
    "'; DROP TABLE cds_card_feedback; --",
    "%0A%0D",
    "Bearer x",
    "already-addressed",
    "overridden",
    "accepted",
]
NASTY_NUMBERS = [0, -1, 1, 2**31, -(2**63), 10**30, 0.1, -0.0, 1e308, 3.3, 0.45, 1e-300]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10)
    if kind < 3:
        return rng.choice(NASTY_STRINGS)
    if kind < 5:
        return rng.choice(NASTY_NUMBERS)
    if kind == 5:
        return rng.choice([None, True, False])
    if kind == 6 and depth < 3:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7 and depth < 3:
        return {rng.choice(NASTY_STRINGS[:12]): _value(rng, depth + 1) for _ in range(3)}
    if kind == 8:
        deep: Any = "x"
        for _ in range(rng.choice([10, 63, 64, 65, 200])):
            deep = [deep]
        return deep
    return rng.choice([{}, [], {"resourceType": "Bundle"}, {"reference": "Medication/x"}])


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _mutate(rng: random.Random, body: Any) -> Any:
    body = copy.deepcopy(body)
    paths = list(_paths(body))
    for _ in range(rng.randint(1, 3)):
        if not paths:
            return _value(rng)
        path = rng.choice(paths)
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        action = rng.randrange(4)
        try:
            if action == 0 and isinstance(parent, dict):
                del parent[path[-1]]
            elif action == 1 and isinstance(parent, dict):
                parent[rng.choice(NASTY_STRINGS[:12])] = _value(rng)
            else:
                parent[path[-1]] = _value(rng)
        except (KeyError, IndexError, TypeError):
            continue
        paths = list(_paths(body))
    return body


def _raw(rng: random.Random, body: Any) -> bytes:
    raw = json.dumps(body).encode()  # ASCII escapes: lone surrogates arrive as \\ud800
    kind = rng.randrange(12)
    if kind == 0 and raw:
        return raw[: rng.randrange(len(raw))]
    if kind == 1 and raw:
        index = rng.randrange(len(raw))
        return raw[:index] + bytes([rng.randrange(256)]) + raw[index + 1 :]
    if kind == 2:
        return raw + b" trailing"
    if kind == 3:
        return rng.choice([b"", b"null", b"[]", b"\xff\xfe", b'"\xed\xa0\x80"', b"{" * 3000])
    return raw


class Fuzzer:
    def __init__(self, app: Flask, key: SigningKey) -> None:
        self.client: FlaskClient = app.test_client()
        self.key = key
        self.services = runtime(app).services
        self.requests = [
            (service_for(s["hook"]), request_of(s))
            for s in SCENARIOS
            if service_for(s["hook"]) in self.services
        ]
        self.used_tokens: list[str] = []

    def _token(self, rng: random.Random, path: str) -> str | None:
        kind = rng.randrange(20)
        claims = {**issued_now(), "iss": ISSUER, "aud": BASE_URL + path, "jti": str(uuid.uuid4())}
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice(["Bearer", "Bearer ", "Basic abc", "Bearer a.b.c", "x" * 9000])
        if kind == 2:
            claims["exp"] = claims["iat"] - 3600
        if kind == 3:
            claims["aud"] = BASE_URL + "/cds-services/other"
        if kind == 4 and self.used_tokens:
            return rng.choice(self.used_tokens)  # replayed
        if kind == 5:
            claims[rng.choice(["iss", "aud", "jti", "exp", "tenant"])] = _value(rng)
        # Signed as raw JWS: PyJWT's own encoder refuses claims of the wrong type.
        payload = json.dumps(claims, default=str).encode()
        signed = jwt.api_jws.PyJWS().encode(
            payload, self.key.private_key, algorithm=self.key.alg, headers={"kid": self.key.kid}
        )
        token = f"Bearer {signed}"
        if kind == 6:
            token = token[:-4] + "AAAA"  # signature broken
        self.used_tokens = [*self.used_tokens[-20:], token]
        return token

    def _fhir_answer(self, rng: random.Random) -> Any:
        kind = rng.randrange(8)
        fhir_json = {"Content-Type": "application/fhir+json"}
        if kind == 0:
            return (500, {}, "oops")
        if kind == 1:
            return (302, {"Location": "https://evil.example.net/"}, "")
        if kind == 2:
            return (200, fhir_json, "{not json")
        if kind == 3:
            return (200, {"Content-Type": "text/html"}, "<html></html>")
        if kind == 4:
            body = {"resourceType": "Bundle", "type": "searchset", "entry": [_value(rng)]}
            body["link"] = [{"relation": "next", "url": rng.choice(NASTY_STRINGS)}]
            return (200, fhir_json, json.dumps(body))
        if kind == 5:
            return (200, fhir_json, json.dumps(_value(rng)))
        return (200, fhir_json, json.dumps({"resourceType": "Bundle", "type": "searchset"}))

    def variant(self, index: int, fhir: responses.RequestsMock) -> tuple[str, Any]:
        """Send variant `index`; the (description, response)."""
        rng = random.Random(f"{SEED}-{index}")
        fhir.reset()
        fhir.add_callback(responses.GET, re.compile(r".*"), lambda _r: self._fhir_answer(rng))
        target = rng.randrange(10)
        method, headers, data = "POST", {}, None
        if target < 6:
            service_id, body = rng.choice(self.requests)
            path = f"/cds-services/{rng.choice([service_id, service_id, 'unknown', ''])}"
            data = _raw(rng, _mutate(rng, body))
        elif target < 8:
            path = f"/cds-services/{rng.choice(list(self.services))}/feedback"
            data = _raw(rng, _mutate(rng, _feedback_body()))
        else:
            method = "GET"
            path = rng.choice(
                [
                    "/cds-services",
                    "/healthz",
                    "/readyz",
                    "/admin/api/stats",
                    # Percent-encoded bytes, as a client would send them (lone
                    # surrogates become invalid UTF-8).
                    "/admin/api/stats?since="
                    + quote(rng.choice(NASTY_STRINGS).encode("utf-8", "surrogatepass")),
                    "/cds-services//feedback",
                    "/" + rng.choice(["x", "..", "%0A", "cds-services/x/y", "admin/x"]),
                ]
            )
            if rng.random() < 0.3:
                method = rng.choice(["POST", "PUT", "DELETE", "PATCH"])
                data = _raw(rng, _value(rng))
        if (token := self._token(rng, path.split("?")[0])) is not None:
            headers["Authorization"] = token
        if path.startswith("/admin") and rng.random() < 0.7:
            credentials = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
            headers["Authorization"] = f"Basic {credentials}"
        content_type = rng.choice(
            ["application/json"] * 8 + ["text/plain", "application/fhir+json"]
        )
        response = self.client.open(
            path, method=method, data=data, headers=headers, content_type=content_type
        )
        return f"#{index} {method} {path}", response


def _feedback_body() -> dict[str, Any]:
    return {
        "feedback": [
            {
                "card": str(uuid.uuid4()),
                "outcome": "overridden",
                "outcomeTimestamp": "2025-03-03T09:00:00Z",
                "overrideReason": {
                    "reason": {
                        "system": "https://leukopenia-cds.example.org/CodeSystem/override-reason",
                        "code": "already-addressed",
                        "display": "Already addressed",
                    },
                    "userComment": "seen",
                },
            },
            {
                "card": str(uuid.uuid4()),
                "outcome": "accepted",
                "outcomeTimestamp": "2025-03-03T09:00:00+01:00",
                "acceptedSuggestions": [{"id": str(uuid.uuid4())}],
            },
        ]
    }


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    key = SigningKey(ec.generate_private_key(ec.SECP384R1()), "fuzz-key", "ES384")
    (folder / "jwks.json").write_text(json.dumps(jwks(key)))
    app = create_app(
        production(
            DATABASE_URL=f"sqlite:///{folder}/cds.sqlite3",
            PUBLIC_BASE_URL=BASE_URL,
            TRUSTED_ISSUERS={ISSUER: {"jwks_file": str(folder / "jwks.json")}},
            ADMIN_PASSWORD=ADMIN_PASSWORD,
        )
    )
    yield Fuzzer(app, key)
    runtime(app).storage.close()


def test_seeded_variants_of_every_endpoint_get_json_and_no_5xx(fuzzer: Fuzzer) -> None:
    problems: list[str] = []
    statuses: dict[int, int] = {}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fhir:
        for index in range(VARIANTS):
            described, response = fuzzer.variant(index, fhir)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                problems.append(f"{described}: {response.status_code}")
            elif not response.is_json or response.get_json(silent=True) is None:
                problems.append(f"{described}: {response.status_code} not JSON")
    print(f"{VARIANTS} variants, statuses: {dict(sorted(statuses.items()))}")
    assert not problems, problems[:20]
    # The variants reach the service, not only the token check.
    assert statuses.get(200, 0) > VARIANTS / 10
    assert statuses.get(400, 0) > VARIANTS / 20
