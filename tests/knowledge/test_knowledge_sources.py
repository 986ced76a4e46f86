"""The knowledge's citations and code lists are auditable: every source link goes to the
article (DOI) or the label itself, every source a rule cites exists, the SLE value set holds
SLE (organ manifestations, nephritis classes) and never cutaneous-only lupus, and every
service asks the EHR for exactly the codes the knowledge reads."""

from __future__ import annotations

import ast
import dataclasses
import re
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from cds_service.knowledge import LOINC, load_knowledge
from cds_service.record import build_record, terminology
from cds_service.rules import RULES, evaluate_rules
from cds_service.rules.assessments import fever
from cds_service.services import ServiceDefinition, load_services
from tests.support.builders import (
    ANC,
    NOW,
    PATIENT,
    WBC,
    condition,
    medication_request,
    observation,
    temperature,
)

KNOWLEDGE = resources.files("cds_service.knowledge")
RULES_DIR = Path(__file__).resolve().parents[2] / "cds_service" / "rules"

SOURCES = yaml.safe_load(KNOWLEDGE.joinpath("sources.yaml").read_text())
CONDITIONS = yaml.safe_load(KNOWLEDGE.joinpath("conditions.yaml").read_text())
MEDICATIONS = yaml.safe_load(KNOWLEDGE.joinpath("medications.yaml").read_text())

# What a link of each kind must look like: the article, the label or the publisher's document.
URL_SHAPES = {
    "doi": re.compile(r"^https://doi\.org/10\.\d{4,9}/\S+$"),
    "label": re.compile(
        r"^https://dailymed\.nlm\.nih\.gov/dailymed/drugInfo\.cfm\?setid=[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$"
    ),
    "pubmed": re.compile(r"^https://pubmed\.ncbi\.nlm\.nih\.gov/\d+/$"),
}
PUBLISHER_HOSTS = {
    "ctep.cancer.gov",
    "cpicpgx.org",
    "ucum.org",
    "cds-hooks.hl7.org",
    "www.ismp.org",
}
SEARCH_MARKS = ("search", "?q=", "&q=", "query=", "term=", "?p=")


@pytest.mark.parametrize("key", sorted(SOURCES))
def test_every_source_links_to_the_article_or_the_label(key):
    source = SOURCES[key]
    url = source["url"]
    assert source["label"] and source["supports"] and source["verified"], key
    assert not any(mark in url.lower() for mark in SEARCH_MARKS), f"{key}: a search page"
    kind = source["kind"]
    if kind == "publisher":
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.hostname in PUBLISHER_HOSTS, key
        assert not parts.query, f"{key}: a publisher document has no query"
    else:
        assert URL_SHAPES[kind].match(url), f"{key}: {url} is not a {kind} link"


def test_the_search_page_check_catches_the_old_links():
    old = "https://dailymed.nlm.nih.gov/dailymed/search.cfm?labeltype=all&query=azathioprine"
    assert any(mark in old for mark in SEARCH_MARKS)
    assert not URL_SHAPES["label"].match(old)


def _is_sources_keyword(node: ast.AST) -> bool:
    return isinstance(node, ast.keyword) and node.arg == "sources"


def _is_sources_assignment(node: ast.AST) -> bool:
    return isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "sources" for t in node.targets
    )


def _cited_keys(tree: ast.AST) -> set[str]:
    """String constants inside `sources=[...]` arguments, `sources = [...]` assignments and
    the return values of helpers named *_label / *_sources (conditional citations)."""
    keys: set[str] = set()
    subtrees: list[ast.AST] = []
    for node in ast.walk(tree):
        if _is_sources_keyword(node) or _is_sources_assignment(node):
            subtrees.append(node.value)
        elif isinstance(node, ast.FunctionDef) and node.name.endswith(("_label", "_sources")):
            subtrees += [n.value for n in ast.walk(node) if isinstance(n, ast.Return) and n.value]
    for subtree in subtrees:
        for node in ast.walk(subtree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                keys.add(node.value)
    return keys


def test_every_source_a_rule_cites_exists():
    cited: set[str] = set()
    for path in sorted(RULES_DIR.glob("*.py")):
        cited |= _cited_keys(ast.parse(path.read_text()))
    # Drug labels and combination sources are named in the medication knowledge.
    cited |= {e["label"] for e in MEDICATIONS["ingredients"].values() if e.get("label")}
    cited |= {c["source"] for c in MEDICATIONS["combinations"]}
    assert {"ctcae_v5", "label_filgrastim", "label_hydroxychloroquine"} <= cited
    assert cited - set(SOURCES) == set()


def test_eular_is_cited_only_for_what_it_says():
    """EULAR 2023 is not the source of leukopenia management, CBC intervals or G-CSF advice."""
    for path in sorted(RULES_DIR.glob("*.py")):
        text = path.read_text()
        for line in text.splitlines():
            if "EULAR" in line and not line.lstrip().startswith("#"):
                assert "hydroxychloroquine" in line.lower() or "every lupus" in line, (
                    f"{path.name}: {line.strip()}"
                )


def test_every_interacting_drug_cites_its_own_label():
    for partner in ("allopurinol", "febuxostat", "trimethoprim"):
        assert MEDICATIONS["ingredients"][partner]["label"] in SOURCES


# --- SLE value set -----------------------------------------------------------------------------

CODE_LISTS = set(CONDITIONS["code_sources"])
SLE_SNOMED = {e["code"]: e for e in CONDITIONS["sle"]["snomed"]}
CUTANEOUS = {e["code"] for e in CONDITIONS["cutaneous_lupus"]["snomed"]}


def test_every_condition_code_has_a_grade_and_known_sources():
    for group, entries in CONDITIONS.items():
        if group in ("systems", "code_sources"):
            continue
        for system_entries in entries.values():
            for entry in system_entries:
                assert entry["grade"] in ("A", "B", "C"), (group, entry)
                assert entry["sources"] and set(entry["sources"]) <= CODE_LISTS, (group, entry)


def test_sle_grades_follow_the_number_of_code_lists():
    """Grade B: two independent code lists hold the code; grade C: one."""
    for entry in SLE_SNOMED.values():
        if entry["sources"] != ["clinical_contract"]:
            assert entry["grade"] == ("B" if len(entry["sources"]) >= 2 else "C"), entry


def test_the_sle_value_set_holds_organ_manifestations_and_nephritis_classes():
    nephritis_classes = {"73286009", "4676006", "76521009", "36402006", "52042003", "11013005"}
    assert nephritis_classes <= set(SLE_SNOMED)
    assert {"55464009", "68815009", "239887007", "95644001", "309762007"} <= set(SLE_SNOMED)
    assert len(SLE_SNOMED) > 40


def test_no_cutaneous_only_lupus_in_the_sle_value_set():
    assert not CUTANEOUS & set(SLE_SNOMED)
    # discoid, subacute cutaneous, chronic discoid, chilblain, panniculitis, limited lupus
    for code in ("200938002", "239891002", "238927000", "238928005", "239888002", "239886003"):
        assert code in CUTANEOUS


@pytest.mark.parametrize("code", ["36402006", "52042003", "95644001"])
def test_a_nephritis_class_or_organ_code_puts_the_patient_in_scope(code, knowledge):
    concept = {"coding": [{"system": "http://snomed.info/sct", "code": code}]}
    assert terminology.condition_group(concept, knowledge) == "sle"
    record = build_record([condition(code), observation(WBC, 3.2)], PATIENT, NOW, knowledge)
    assert record.in_scope
    assert record.lupus is not None and record.lupus.kind == "sle"


@pytest.mark.parametrize("code", ["238927000", "200938002", "239888002"])
def test_a_cutaneous_lupus_code_alone_does_not(code, knowledge):
    concept = {"coding": [{"system": "http://snomed.info/sct", "code": code}]}
    assert terminology.condition_group(concept, knowledge) == "cutaneous_lupus"
    record = build_record([condition(code), observation(WBC, 3.2)], PATIENT, NOW, knowledge)
    assert not record.in_scope
    assert record.lupus is None


# --- Every service asks for exactly the codes the knowledge reads --------------------------------

CODE_PARAMETER = re.compile(r"[?&]code=([^&]*)")


def _asked_codes(service: ServiceDefinition) -> set[tuple[str, str]]:
    asked: set[tuple[str, str]] = set()
    for template in service.prefetch.values():
        for value in CODE_PARAMETER.findall(template):
            asked |= {(token.split("|")[0], token.split("|")[1]) for token in value.split(",")}
    return asked


def _read_codes(knowledge) -> set[tuple[str, str]]:
    """What the record reads: each analyte's codes and the site's Duffy phenotype codes."""
    duffy = knowledge.settings["duffy_null_codes"]
    return set(knowledge.analyte_by_code) | {(entry["system"], entry["code"]) for entry in duffy}


def test_every_service_asks_for_exactly_the_codes_the_knowledge_reads(knowledge):
    services = load_services(knowledge=knowledge)
    assert set(services) == {
        "leukopenia-patient-view",
        "leukopenia-order-select",
        "leukopenia-order-sign",
    }
    for service in services.values():
        assert _asked_codes(service) == _read_codes(knowledge), service.id


def test_an_analyte_added_to_the_knowledge_is_asked_for(knowledge):
    codes = dict(knowledge.codes_by_kind)
    codes["count"] += ((LOINC, "26515-7"),)  # platelets, were a rule to read them
    wider = dataclasses.replace(knowledge, codes_by_kind=codes)
    service = load_services(knowledge=wider)["leukopenia-patient-view"]
    assert (LOINC, "26515-7") in _asked_codes(service)


def test_a_site_duffy_phenotype_code_is_asked_for():
    site = [{"system": "https://hospital.example/codes", "code": "FY-PHENO", "value": "Fy(a-b-)"}]
    knowledge = load_knowledge(setting_overrides={"duffy_null_codes": site})
    service = load_services(knowledge=knowledge)["leukopenia-order-sign"]
    assert _asked_codes(service) == _read_codes(knowledge)
    assert ("https://hospital.example/codes", "FY-PHENO") in _asked_codes(service)


def test_a_bladder_temperature_counts_as_fever(knowledge):
    """8334-5 (body temperature at the urinary bladder, a core temperature) was asked for by
    every hook but unknown, so such a fever never counted."""
    assert knowledge.analyte_by_code[(LOINC, "8334-5")] == "temperature"
    febrile = observation("8334-5", 38.6, "Cel", hours_ago=1)
    record = build_record([condition("55464009"), febrile], PATIENT, NOW, knowledge)
    assert fever(record, knowledge) is not None
    normal = observation("8334-5", 37.2, "Cel", hours_ago=1)
    record = build_record([condition("55464009"), normal], PATIENT, NOW, knowledge)
    assert fever(record, knowledge) is None


# --- Conditional citations follow the text -------------------------------------------------------


def _sources_of(rule: str, resources: list, knowledge) -> list[str]:
    record = build_record(resources, PATIENT, NOW, knowledge)
    [finding] = [
        f for f in evaluate_rules(record, knowledge, "patient-view", RULES) if f.rule == rule
    ]
    return finding.sources


def test_rituximab_late_onset_neutropenia_is_cited_only_when_named(knowledge):
    severe = [condition("55464009"), observation(WBC, 2.0), observation(ANC, 0.3)]
    rituximab = medication_request("121191", status="completed", days_ago=90)
    assert "wolach_rituximab_lon_2010" in _sources_of(
        "NEUTROPENIA_SEVERE", [*severe, rituximab], knowledge
    )
    assert "wolach_rituximab_lon_2010" not in _sources_of("NEUTROPENIA_SEVERE", severe, knowledge)


def test_gcsf_flare_reports_are_cited_for_lupus_patients_only(knowledge):
    febrile = [observation(WBC, 2.0), observation(ANC, 0.3), temperature(38.6, hours_ago=1)]
    methotrexate = medication_request("6851", dose_mg=15)
    in_sle = _sources_of("FEBRILE_NEUTROPENIA", [condition("55464009"), *febrile], knowledge)
    assert {"asco_gcsf_2015", "vasiliu_gcsf_sle_2006"} <= set(in_sle)
    assert "eular_sle_2023" not in in_sle
    no_lupus = _sources_of("FEBRILE_NEUTROPENIA", [methotrexate, *febrile], knowledge)
    assert "vasiliu_gcsf_sle_2006" not in no_lupus
