"""Service definitions (hooks/*.yaml): the order-sign service extends the order-select one,
and prefetch templates name the knowledge's code lists, filled at loading so that discovery
shows only CDS Hooks 2.0 tokens."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cds_service.config import ConfigError
from cds_service.rules.catalogue import rule_ids
from cds_service.services import load_services

ROOT = Path(__file__).resolve().parents[2]

SERVICE = """
id: {id}
hook: patient-view
title: A service
description: A test service.
rules: [DATA_QUALITY]
prefetch:
  counts: Observation?patient={{{{context.patientId}}}}&code={codes}
"""


def _write(folder: Path, name: str, text: str) -> None:
    (folder / f"{name}.yaml").write_text(text)


def test_the_order_services_differ_only_in_id_hook_and_title():
    services = load_services()
    select = services["leukopenia-order-select"].discovery_entry()
    sign = services["leukopenia-order-sign"].discovery_entry()
    assert {key for key in select if select[key] != sign[key]} == {"id", "hook", "title"}
    assert sign["hook"] == "order-sign" and sign["title"].endswith("(order-sign)")
    assert services["leukopenia-order-sign"].rules == services["leukopenia-order-select"].rules


def test_discovery_shows_only_cds_hooks_tokens():
    for service in load_services().values():
        for template in service.prefetch.values():
            assert set(re.findall(r"\{\{(.*?)\}\}", template)) <= {"context.patientId"}


def test_an_extension_of_an_unknown_service_is_refused(tmp_path):
    _write(tmp_path, "a", SERVICE.format(id="a", codes="{{knowledge.weight_codes}}"))
    _write(tmp_path, "b", "extends: nope\nid: b\nhook: order-sign\n")
    with pytest.raises(ConfigError, match="b.yaml: extends 'nope', which is not the id"):
        load_services(str(tmp_path))


def test_an_extension_of_an_extension_is_refused(tmp_path):
    _write(tmp_path, "a", SERVICE.format(id="a", codes="{{knowledge.weight_codes}}"))
    _write(tmp_path, "b", "extends: a\nid: b\nhook: order-sign\n")
    _write(tmp_path, "c", "extends: b\nid: c\nhook: order-select\n")
    with pytest.raises(ConfigError, match="c.yaml: extends 'b'"):
        load_services(str(tmp_path))


def test_an_unknown_code_list_is_refused_with_the_known_ones(tmp_path):
    _write(tmp_path, "a", SERVICE.format(id="a", codes="{{knowledge.platelet_codes}}"))
    with pytest.raises(ConfigError, match=r"knowledge.platelet_codes.*knowledge.count_codes"):
        load_services(str(tmp_path))


def test_code_lists_joined_by_commas_make_one_list(tmp_path):
    codes = "{{knowledge.weight_codes}},{{knowledge.duffy_null_codes}}"
    _write(tmp_path, "a", SERVICE.format(id="a", codes=codes))
    template = load_services(str(tmp_path))["a"].prefetch["counts"]
    assert template.endswith(
        "&code=http://loinc.org|29463-7,"
        "http://example.org/fhir/CodeSystem/leukopenia-cds-site-codes|duffy-phenotype"
    )


# Without a `rules:` list a service runs every catalogue rule of its hook, in catalogue order.
ORDER_RULES = (
    "FEBRILE_NEUTROPENIA",
    "NEUTROPENIA_SEVERE",
    "METHOTREXATE_DAILY_DOSING",
    "ORDER_MYELOTOXIC_LOW_COUNTS",
    "ORDER_NO_RECENT_CBC",
    "GCSF_CAUTION",
    "THIOPURINE_PGX",
    "DATA_QUALITY",
)


def _without_rules(service_id: str, hook: str) -> str:
    text = SERVICE.format(id=service_id, codes="{{knowledge.weight_codes}}")
    return text.replace("hook: patient-view", f"hook: {hook}").replace(
        "rules: [DATA_QUALITY]\n", ""
    )


def test_a_service_without_rules_runs_every_catalogue_rule_of_its_hook(tmp_path):
    _write(tmp_path, "pv", _without_rules("pv", "patient-view"))
    _write(tmp_path, "sign", _without_rules("sign", "order-sign"))
    services = load_services(str(tmp_path))
    assert services["sign"].rules == ORDER_RULES
    patient_view = services["pv"].rules
    assert patient_view == rule_ids("patient-view")
    assert "NEUTROPENIA_MODERATE" in patient_view and "STEROID_LEUKOCYTOSIS_NOTE" in patient_view
    assert not {"ORDER_MYELOTOXIC_LOW_COUNTS", "GCSF_CAUTION"} & set(patient_view)


def test_the_packaged_services_leave_the_rules_to_the_catalogue():
    for path in sorted((ROOT / "hooks").glob("*.yaml")):
        assert "rules" not in yaml.safe_load(path.read_text()), path.name
    services = load_services()
    assert services["leukopenia-order-select"].rules == ORDER_RULES
    assert services["leukopenia-order-sign"].rules == ORDER_RULES
    assert services["leukopenia-patient-view"].rules == rule_ids("patient-view")


def test_a_listed_subset_is_kept_as_given(tmp_path):
    _write(tmp_path, "a", SERVICE.format(id="a", codes="{{knowledge.weight_codes}}"))
    assert load_services(str(tmp_path))["a"].rules == ("DATA_QUALITY",)


@pytest.mark.parametrize("listed", ["rules: []", "rules:", "rules: DATA_QUALITY", "rules: [1]"])
def test_an_empty_or_malformed_rules_list_is_refused(tmp_path, listed):
    text = SERVICE.format(id="a", codes="{{knowledge.weight_codes}}")
    _write(tmp_path, "a", text.replace("rules: [DATA_QUALITY]", listed))
    with pytest.raises(ConfigError, match="a.yaml: rules must list rule ids"):
        load_services(str(tmp_path))
