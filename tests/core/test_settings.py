"""Thresholds and switches are settings a site can change, validated at start-up."""

from __future__ import annotations

import pytest

from cds_service import create_app
from cds_service.config import ConfigError
from cds_service.knowledge import load_knowledge
from cds_service.record import build_record
from cds_service.rules import RULES, evaluate_rules
from tests.settings import production

from .builders import ALC, AZATHIOPRINE, NOW, PATIENT, WBC, medication_request, observation, sle


def rules_fired(resources, knowledge):
    record = build_record(resources, PATIENT, NOW, knowledge)
    return {f.rule: f.indicator for f in evaluate_rules(record, knowledge, "patient-view", RULES)}


def test_a_site_can_lower_the_dose_review_threshold():
    resources = [medication_request(AZATHIOPRINE, days_ago=400), observation(WBC, 3.2)]
    assert rules_fired(resources, load_knowledge())["DRUG_CYTOPENIA_DOSE_REVIEW"] == "warning"
    lowered = load_knowledge({"dose_review_wbc": 3.0})
    assert rules_fired(resources, lowered)["DRUG_CYTOPENIA_DOSE_REVIEW"] == "info"


def test_lymphopenia_info_is_off_by_default_and_can_be_switched_on():
    resources = [sle(), observation(WBC, 4.5), observation(ALC, 0.7)]
    assert "LYMPHOPENIA_INFO" not in rules_fired(resources, load_knowledge())
    enabled = load_knowledge(setting_overrides={"lymphopenia_info_enabled": True})
    assert rules_fired(resources, enabled)["LYMPHOPENIA_INFO"] == "info"


@pytest.mark.parametrize(
    ("thresholds", "settings", "message"),
    [
        ({"no_such_threshold": 1}, {}, "unknown threshold"),
        ({"dose_review_wbc": "low"}, {}, "non-negative number"),
        ({"dose_review_wbc": 5.0}, {}, "must not exceed"),
        ({}, {"lymphopenia_info_enabled": "yes"}, "must be bool"),
    ],
)
def test_bad_site_settings_stop_the_service(thresholds, settings, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        create_app(
            {
                "ENV": "testing",
                "THRESHOLDS": thresholds,
                "CLINICAL_SETTINGS": settings,
                "DATABASE_URL": f"sqlite:///{tmp_path}/cds.sqlite3",
            }
        )


def test_production_cors_allows_only_listed_origins(tmp_path):
    app = create_app(production(DATABASE_URL=f"sqlite:///{tmp_path}/cds.sqlite3"))
    client = app.test_client()
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    allowed = client.options(
        "/cds-services", headers={"Origin": "https://ehr.example.org", **preflight}
    )
    other = client.options("/cds-services", headers={"Origin": "https://evil.example", **preflight})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    assert "Access-Control-Allow-Origin" not in other.headers
    assert client.get("/cds-services").status_code == 401  # production needs a JWT
    app.extensions["cds_storage"].close()
