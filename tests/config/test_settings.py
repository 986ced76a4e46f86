"""Thresholds and switches are settings a site can change, validated at start-up; settings are
typed and frozen, an unknown name is refused, and the knowledge version names a site's changes."""

from __future__ import annotations

import dataclasses
import os
import re

import pytest

from cds_service import create_app
from cds_service.config import DECLARED, ConfigError, Settings, load_config
from cds_service.knowledge import load_knowledge
from cds_service.record import build_record
from cds_service.rules import RULES, evaluate_rules
from cds_service.runtime import runtime
from tests.support.builders import (
    ALC,
    AZATHIOPRINE,
    NOW,
    PATIENT,
    WBC,
    medication_request,
    observation,
    sle,
)
from tests.support.settings import production
from tests.support.site import write_site


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
    site = write_site(tmp_path / "site", thresholds=thresholds, clinical=settings)
    with pytest.raises(ConfigError, match=message):
        create_app(
            {
                "ENV": "testing",
                "SITE_DIR": site,
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
    runtime(app).close()


# --- Typed settings: attributes, frozen, unknown names refused ------------------------------


def test_settings_are_typed_and_frozen(monkeypatch):
    monkeypatch.setenv("CDS_FHIR_MAX_PAGES", "3")
    settings = load_config({"ENV": "testing", "SNOOZE_REASON_CODES": ["counts-reviewed"]})
    assert settings.fhir_max_pages == 3 and settings.development
    assert settings.snooze_reason_codes == ("counts-reviewed",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.fhir_max_pages = 10  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.rule_modes["*"] = {}  # type: ignore[index]


def test_every_setting_has_its_declared_default(monkeypatch):
    for name in [n for n in os.environ if n.startswith(("CDS_", "GUNICORN_"))]:
        monkeypatch.delenv(name)
    settings = load_config()
    assert settings == Settings()
    for item in DECLARED.values():
        assert getattr(settings, item.attribute) == item.check(item.default()), item.name
    assert settings.fhir_deadline_seconds == 2.0


@pytest.mark.parametrize(
    ("name", "value"),
    [("CDS_PATIENT_KEY_SECRET", "12345"), ("CDS_SITE_DIR", "7"), ("CDS_CORS_ORIGINS", "[1]")],
)
def test_a_setting_of_the_wrong_type_is_refused(monkeypatch, name, value):
    """Environment values parse as JSON: an unquoted number is not the string a field holds."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_config({"ENV": "testing"})


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("FHIR_DEADLINE", "^FHIR_DEADLINE is not a setting.*did you mean FHIR_DEADLINE_SECONDS\\?"),
        ("fhir_max_pages", "^fhir_max_pages is not a setting.*did you mean FHIR_MAX_PAGES\\?"),
        ("XYZZY", "^XYZZY is not a setting of this service"),
    ],
)
def test_an_unknown_key_is_refused_with_the_closest_name(key, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        load_config({"ENV": "testing", key: 1})
    with pytest.raises(ConfigError, match=message):
        create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", key: 1})


def test_create_app_passes_flask_keys_to_flask_and_keeps_the_settings_typed(tmp_path):
    app = create_app(
        {"ENV": "testing", "TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path}/cds.sqlite3"}
    )
    settings = runtime(app).settings
    assert isinstance(settings, Settings) and settings.env == "testing"
    assert app.config["TESTING"] is True
    assert app.config["MAX_CONTENT_LENGTH"] == settings.max_content_length
    assert "FHIR_DEADLINE_SECONDS" not in app.config  # read from the typed settings only
    runtime(app).close()


# --- The version stamp names the site's changes ---------------------------------------------


def test_the_version_stamp_changes_with_site_overrides():
    default = load_knowledge().version
    assert re.fullmatch(r"[0-9a-f]{12}", default)
    lowered = load_knowledge({"dose_review_wbc": 3.0}).version
    switched = load_knowledge(setting_overrides={"lymphopenia_info_enabled": True}).version
    assert re.fullmatch(rf"{default}\+[0-9a-f]{{8}}", lowered)
    assert re.fullmatch(rf"{default}\+[0-9a-f]{{8}}", switched)
    assert lowered != switched != load_knowledge({"dose_review_wbc": 2.5}).version
    # The same site settings give the same stamp; restating a default is no change.
    assert load_knowledge({"dose_review_wbc": 3.0}).version == lowered
    unchanged = load_knowledge().thresholds["dose_review_wbc"]
    assert load_knowledge({"dose_review_wbc": unchanged}).version == default
