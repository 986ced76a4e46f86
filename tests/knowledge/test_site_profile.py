"""The site profile (CDS_SITE_DIR, docs/site-profile.md): local codes added through it alone
count like the packaged ones, everywhere (Observations, medications, conditions, the prefetch
searches); thresholds and switches come from its files; it is part of the knowledge version;
every file is checked at start-up."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from cds_service import create_app
from cds_service.cli import main
from cds_service.config import ConfigError, load_config
from cds_service.engine import evaluate
from cds_service.knowledge import Knowledge, load_knowledge
from cds_service.protocol.request import parse_request
from cds_service.runtime import runtime
from cds_service.services import ServiceDefinition, load_site
from tests.support.builders import (
    AZATHIOPRINE,
    NOW,
    PATIENT,
    WBC,
    condition,
    medication_request,
    observation,
    sle,
)
from tests.support.findings import findings
from tests.support.site import EXAMPLE_SITE, write_site

LAB = "https://lab.example-hospital.org/CodeSystem/analyser-tests"
PHARMACY = "https://pharmacy.example-hospital.org/CodeSystem/formulary"
PROBLEMS = "https://ehr.example-hospital.org/CodeSystem/problem-list"
LOINC = "http://loinc.org"
PATIENT_VIEW_HOOK = Path(__file__).parents[2] / "hooks" / "patient-view.yaml"


def local_wbc(value: float, **kwargs: Any) -> dict[str, Any]:
    """A WBC result coded only with the example hospital's analyser code (no LOINC)."""
    return observation(WBC, value, **kwargs) | {
        "code": {"coding": [{"system": LAB, "code": "HWBC"}]}
    }


def local_azathioprine(**kwargs: Any) -> dict[str, Any]:
    concept = {"coding": [{"system": PHARMACY, "code": "AZA-50-TAB"}]}
    return medication_request(None, medicationCodeableConcept=concept, **kwargs)


@pytest.fixture(scope="module")
def example() -> tuple[Knowledge, dict[str, ServiceDefinition]]:
    return load_site(EXAMPLE_SITE)


def cards(resources: list[dict[str, Any]], site_dir: str = "") -> list[dict[str, Any]]:
    """The patient-view cards for `resources` sent as the service's prefetch, at NOW."""
    knowledge, services = load_site(site_dir)
    service = services["leukopenia-patient-view"]
    patient = {"resourceType": "Patient", "id": PATIENT, "birthDate": "1980-01-01"}
    prefetch: dict[str, Any] = {}
    for key, template in service.prefetch.items():
        kind = template.split("?")[0].split("/")[0]
        matches = [r for r in resources if r["resourceType"] == kind]
        prefetch[key] = patient if kind == "Patient" else _searchset(matches)
    body = {
        "hook": service.hook,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": PATIENT},
        "prefetch": prefetch,
    }
    config = load_config({"ENV": "testing"})
    request = parse_request(body, service.hook)
    return evaluate(service, request, knowledge, config, NOW).cards


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    entries = [{"resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def _comparable(card: Any) -> Any:
    """A card without what differs between two calls (uuids) and its knowledge version."""
    if isinstance(card, dict):
        return {k: _comparable(v) for k, v in card.items() if k not in ("uuid", "extension")}
    return [_comparable(item) for item in card] if isinstance(card, list) else card


# --- Local codes count through the site profile alone ----------------------------------------


def test_a_local_wbc_code_gives_the_card_the_loinc_code_gives():
    loinc_cards = cards([sle(), observation(WBC, 2.1)])
    assert [c["source"]["topic"]["code"] for c in loinc_cards] == ["LEUKOPENIA_MONITOR"]
    local_cards = cards([sle(), local_wbc(2.1)], EXAMPLE_SITE)
    assert _comparable(local_cards) == _comparable(loinc_cards)
    version = "leukopenia-cds-knowledge-version"
    assert local_cards[0]["extension"][version] == load_site(EXAMPLE_SITE)[0].version
    # Without the site profile the local code is not a WBC: no card, nothing counted.
    assert cards([sle(), local_wbc(2.1)]) == []


def test_a_local_wbc_code_is_read_with_its_units_like_a_loinc_one(example):
    knowledge, _ = example
    assert "LEUKOPENIA_MONITOR" in findings([sle(), local_wbc(2100, unit="cells/uL")], knowledge)
    # An unknown unit is never guessed from the magnitude, for a local code as for LOINC.
    unknown = findings([sle(), local_wbc(2.1, unit="blips")], knowledge)
    assert "LEUKOPENIA_MONITOR" not in unknown and "DATA_QUALITY" in unknown


def test_a_local_azathioprine_product_code_makes_the_drug_count(example):
    knowledge, _ = example
    rxnorm = findings([medication_request(AZATHIOPRINE), observation(WBC, 3.2)], knowledge)
    local = findings([local_azathioprine(), observation(WBC, 3.2)], knowledge)
    assert rxnorm["DRUG_CYTOPENIA_DOSE_REVIEW"].indicator == "warning"
    assert local.keys() == rxnorm.keys()
    assert local["DRUG_CYTOPENIA_DOSE_REVIEW"].indicator == "warning"
    product = knowledge.product(PHARMACY, "AZA-50-TAB")
    assert product is not None and product.ingredient == "azathioprine"
    assert product.strength_mg == 50 and product.scored
    packaged = findings([local_azathioprine(), observation(WBC, 3.2)], load_knowledge())
    assert "DRUG_CYTOPENIA_DOSE_REVIEW" not in packaged


def test_a_local_sle_code_puts_the_patient_in_scope(example):
    knowledge, _ = example
    local_sle = condition("PL-SLE", PROBLEMS)
    assert "LEUKOPENIA_MONITOR" in findings([local_sle, observation(WBC, 2.1)], knowledge)
    assert findings([local_sle, observation(WBC, 2.1)], load_knowledge()) == {}


def test_the_prefetch_asks_for_the_local_codes(example):
    knowledge, services = example
    for service in services.values():
        counts = service.prefetch["counts"]
        assert f"{LAB}|HWBC" in counts and f"{LAB}|HNEUT" in counts, service.id
        assert f"{LOINC}|6690-2" in counts  # the packaged codes are still asked for
    packaged = load_site("")[1]["leukopenia-patient-view"].prefetch["counts"]
    assert "HWBC" not in packaged


def test_the_latest_count_search_asks_for_the_local_codes(example):
    """When the history read holds no WBC, one more search asks for the latest of any age."""
    from cds_service.record.reading_plan import ReadingHorizon
    from cds_service.rules.reading import READING_NEEDS

    knowledge, _ = example
    missing = ReadingHorizon(READING_NEEDS, knowledge, NOW).missing_latest("counts", [])
    assert any(f"{LAB}|HWBC" in codes for codes in missing)


def test_the_local_method_orders_counts_like_a_packaged_one(example):
    knowledge, _ = example
    assert knowledge.method_by_code[(LAB, "HNEUT")] == "automated"
    assert knowledge.analyte_by_code[(LAB, "HNEUT")] == "anc"


# --- Thresholds, switches and hooks from the folder ------------------------------------------


def test_thresholds_and_switches_come_from_the_site_files(tmp_path):
    site = write_site(
        tmp_path, thresholds={"dose_review_wbc": 3.0}, clinical={"lymphopenia_info_enabled": True}
    )
    knowledge, _ = load_site(site)
    assert knowledge.threshold("dose_review_wbc") == 3.0
    assert knowledge.settings["lymphopenia_info_enabled"] is True
    drug = [medication_request(AZATHIOPRINE, days_ago=400), observation(WBC, 3.2)]
    assert findings(drug, knowledge)["DRUG_CYTOPENIA_DOSE_REVIEW"].indicator == "info"


def test_site_hooks_replace_the_packaged_service_definitions(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    shutil.copy(PATIENT_VIEW_HOOK, hooks / "patient-view.yaml")
    _, services = load_site(str(tmp_path))
    assert list(services) == ["leukopenia-patient-view"]


def test_the_app_serves_the_example_site(tmp_path):
    app = create_app(
        {"ENV": "testing", "SITE_DIR": EXAMPLE_SITE, "DATABASE_URL": f"sqlite:///{tmp_path}/c.db"}
    )
    discovery = app.test_client().get("/cds-services").get_json()
    runtime(app).storage.close()
    prefetch = next(s for s in discovery["services"] if s["hook"] == "patient-view")["prefetch"]
    assert f"{LAB}|HWBC" in prefetch["counts"]


def test_check_site_names_the_local_codes(capsys):
    assert main(["check-site", EXAMPLE_SITE]) == 0
    out = capsys.readouterr().out
    assert "a valid site profile" in out and f"{LAB}|HWBC -> wbc" in out
    assert f"{PHARMACY}|AZA-50-TAB -> azathioprine" in out


def test_check_site_refuses_a_bad_folder(tmp_path, capsys):
    write_site(tmp_path, thresholds={"dose_reveiw_wbc": 3.0})
    assert main(["check-site", str(tmp_path)]) == 2
    assert "did you mean dose_review_wbc" in capsys.readouterr().err


# --- The knowledge version names the site profile ---------------------------------------------


def test_the_knowledge_version_changes_with_the_site_profile(tmp_path, example):
    default = load_knowledge().version
    knowledge, _ = example
    assert re.fullmatch(rf"{default}\+[0-9a-f]{{8}}", knowledge.version)
    copy = tmp_path / "copy"
    shutil.copytree(EXAMPLE_SITE, copy)
    assert load_site(str(copy))[0].version == knowledge.version  # same files, same version
    codes = copy / "codes.yaml"
    codes.write_text(codes.read_text().replace('"HNEUT"', '"HNEUT2"'))
    assert load_site(str(copy))[0].version not in (knowledge.version, default)
    before = load_site(str(copy))[0].version
    hooks = copy / "hooks"
    hooks.mkdir()
    shutil.copy(PATIENT_VIEW_HOOK, hooks / "patient-view.yaml")
    assert load_site(str(copy))[0].version != before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_site(str(empty))[0].version == default  # no site file: nothing changed


# --- Every file is checked: a clear refusal naming the file and key -------------------------

OBSERVATION = {"system": LAB, "code": "X1", "display": "local"}
LOINC_ = {"system": LOINC}
MANUAL_LOINC = {"system": LOINC, "method": "manual"}
RXNORM_AZA = {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1256"}
SNOMED_SLE = {"system": "http://snomed.info/sct", "code": "55464009"}
ICD10_SLE = {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M32.15"}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"thresholds": {"no_such_threshold": 1}}, r"thresholds.yaml: unknown threshold"),
        ({"thresholds": {"dose_review_wbc": "low"}}, r"thresholds.yaml: dose_review_wbc must"),
        ({"clinical": {"lymphopenia_info_enabled": "yes"}}, r"clinical.yaml: .* must be bool"),
        ({"clinical": {"no_such_switch": True}}, r"clinical.yaml: unknown setting"),
        ({"codes": {"labs": {}}}, r"codes.yaml: unknown key 'labs'"),
        ({"codes": {"observations": {"wbcc": [OBSERVATION]}}}, r"'wbcc' is not a known analyte"),
        ({"codes": {"observations": {"wbc": OBSERVATION}}}, r"observations.wbc: must be a list"),
        (
            {"codes": {"observations": {"wbc": [{**OBSERVATION, "unit": "g/L"}]}}},
            r"observations.wbc\[0\]: unknown key 'unit'",
        ),
        (
            {"codes": {"observations": {"wbc": [{**OBSERVATION, "code": 1234}]}}},
            r"observations.wbc\[0\].code: must be a non-empty string",
        ),
        (
            {"codes": {"observations": {"wbc": [{**OBSERVATION, "code": "A,B"}]}}},
            r"observations.wbc\[0\].code: 'A,B' holds a character",
        ),
        (
            {"codes": {"observations": {"anc": [{**OBSERVATION, "method": "guess"}]}}},
            r"observations.anc\[0\].method: must be one of",
        ),
        (
            {"codes": {"observations": {"anc": [{**OBSERVATION, "code": "6690-2"} | LOINC_]}}},
            r"observations.anc\[0\]: http://loinc.org\|6690-2 already means 'wbc'",
        ),
        (
            {"codes": {"observations": {"anc": [{**OBSERVATION, "code": "753-4"} | LOINC_]}}},
            None,  # the same meaning restated: accepted
        ),
        (
            {
                "codes": {
                    "observations": {
                        "anc": [{**OBSERVATION, "code": "753-4", "method": "automated"} | LOINC_]
                    }
                }
            },
            r"anc\[0\].method: http://loinc.org\|753-4 is already read with method 'manual'",
        ),
        (
            {
                "codes": {
                    "observations": {"wbc": [{**OBSERVATION, "code": "6690-2"} | MANUAL_LOINC]}
                }
            },
            r"wbc\[0\].method: http://loinc.org\|6690-2 is already read with method 'none'",
        ),
        (
            {
                "codes": {
                    "observations": {"anc": [OBSERVATION | MANUAL_LOINC, OBSERVATION | LOINC_]}
                }
            },
            None,  # the same local code twice, the second without a method: no change
        ),
        (
            {"codes": {"observations": {"anc": [OBSERVATION, OBSERVATION | {"method": "flow"}]}}},
            r"anc\[1\].method: .*\|X1 is already read with method 'none'",
        ),
        (
            {"codes": {"observations": {"wbc": [OBSERVATION], "alc": [OBSERVATION]}}},
            r"observations.alc\[0\]: .*\|X1 already means 'wbc'",
        ),
        (
            {"codes": {"medications": {"azathioprin": [OBSERVATION]}}},
            r"'azathioprin' is not a known ingredient.*did you mean azathioprine",
        ),
        (
            {"codes": {"medications": {"methotrexate": [{**OBSERVATION, **RXNORM_AZA}]}}},
            r"medications.methotrexate\[0\]: .*rxnorm\|1256 already means 'azathioprine'",
        ),
        (
            {"codes": {"medications": {"azathioprine": [{**OBSERVATION, "strength_mg": "50"}]}}},
            r"azathioprine\[0\].strength_mg: must be a positive number",
        ),
        (
            {"codes": {"medications": {"azathioprine": [{**OBSERVATION, "scored": "yes"}]}}},
            r"azathioprine\[0\].scored: must be true or false",
        ),
        ({"codes": {"conditions": {"lupus": [OBSERVATION]}}}, r"'lupus' is not a known condition"),
        (
            {"codes": {"conditions": {"fever": [{**OBSERVATION, **SNOMED_SLE}]}}},
            r"conditions.fever\[0\]: .*55464009 already means 'sle'",
        ),
        (
            {"codes": {"conditions": {"fever": [{**OBSERVATION, **ICD10_SLE}]}}},
            r"conditions.fever\[0\]: .*M32.15 already means 'sle' \(ICD-10-CM",
        ),
    ],
)
def test_a_bad_site_file_is_refused_naming_the_file_and_key(tmp_path, files, message):
    site = write_site(tmp_path, **files)
    if message is None:
        load_site(site)
        return
    with pytest.raises(ConfigError, match=message) as refused:
        load_site(site)
    assert str(tmp_path) in str(refused.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d / "threshold.yaml").write_text("{}"), r"not a site profile file.*thresholds"),
        (
            lambda d: (d / "codes.yaml").write_text("observations: [1"),
            r"codes.yaml: not valid YAML",
        ),
        (lambda d: (d / "clinical.yaml").write_text("- 1"), r"clinical.yaml: must be a mapping"),
        (lambda d: (d / "hooks").mkdir(), r"hooks: no \*.yaml service definitions"),
    ],
)
def test_a_bad_site_folder_is_refused(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(ConfigError, match=message):
        load_site(str(tmp_path))


def test_a_missing_site_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="CDS_SITE_DIR .* is not a folder"):
        load_site(str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("THRESHOLDS", "thresholds.yaml"),
        ("CLINICAL_SETTINGS", "clinical.yaml"),
        ("HOOKS_DIR", "hooks/"),
    ],
)
def test_the_old_settings_name_the_site_file_to_use(monkeypatch, name, file):
    monkeypatch.setenv(f"CDS_{name}", "{}")
    with pytest.raises(ConfigError, match=rf"CDS_{name} is no longer a setting: put it in {file}"):
        load_config({"ENV": "testing"})
    monkeypatch.delenv(f"CDS_{name}")
    with pytest.raises(ConfigError, match=rf"{name} is no longer a setting.*CDS_SITE_DIR"):
        load_config({"ENV": "testing", name: {}})
