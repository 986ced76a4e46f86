"""Service definitions (hooks/*.yaml): the order-sign service extends the order-select one,
and prefetch templates name the knowledge's code lists, filled at loading so that discovery
shows only CDS Hooks 2.0 tokens."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cds_service.config import ConfigError
from cds_service.services import load_services

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
