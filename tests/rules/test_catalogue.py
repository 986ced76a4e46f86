"""The rule catalogue (cds_service/rules/catalogue.py) is the one place a rule is declared:
everything that names rules elsewhere (the service definitions, the fixture generator, the
README and the clinical contract) must agree with it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from cds_service.config import ConfigError
from cds_service.protocol.hooks import ORDER_HOOKS, PATIENT_VIEW, SUPPORTED_HOOKS
from cds_service.rules import RULES
from cds_service.rules.catalogue import BY_ID, CATALOGUE, rule_ids
from cds_service.services import load_services

ROOT = Path(__file__).resolve().parents[2]
IDS = [row.id for row in CATALOGUE]


def test_each_row_has_a_unique_id_a_function_and_a_title() -> None:
    assert len(set(IDS)) == len(IDS)
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]+", rule) for rule in IDS)
    assert all(callable(row.function) for row in CATALOGUE)
    titles = [row.title for row in CATALOGUE]
    assert all(title.strip() for title in titles) and len(set(titles)) == len(titles)
    assert list(RULES) == IDS  # RULES is the catalogue, in run order


def test_each_row_runs_on_known_hooks() -> None:
    for row in CATALOGUE:
        assert row.hooks and set(row.hooks) <= set(SUPPORTED_HOOKS), row.id
        assert len(set(row.hooks)) == len(row.hooks), row.id


def test_precedence_points_at_rules_that_run_earlier() -> None:
    for position, row in enumerate(CATALOGUE):
        earlier = set(IDS[:position])
        assert set(row.suppressed_by) <= earlier, row.id
    for row in CATALOGUE:
        for absorbed in row.absorbs:
            # A card that carries another's content must also keep that card from firing.
            assert row.id in BY_ID[absorbed].suppressed_by, (row.id, absorbed)


def test_the_packaged_services_run_every_rule_their_hook_allows() -> None:
    services = load_services()
    assert {service.hook for service in services.values()} == set(SUPPORTED_HOOKS)
    for service in services.values():
        assert len(set(service.rules)) == len(service.rules), service.id
        assert set(service.rules) == set(rule_ids(service.hook)), service.id


def _write_service(folder: Path, hook: str, rules: list[str]) -> None:
    lines = [
        "id: site-service",
        f"hook: {hook}",
        "title: A site service",
        "description: One of the site's own services.",
        "rules:",
        *(f"  - {rule}" for rule in rules),
    ]
    (folder / "site.yaml").write_text("\n".join(lines) + "\n")


def test_a_service_may_run_a_subset_of_the_rules_of_its_hook(tmp_path: Path) -> None:
    _write_service(tmp_path, PATIENT_VIEW, ["NEUTROPENIA_SEVERE", "FEBRILE_NEUTROPENIA"])
    service = load_services(str(tmp_path))["site-service"]
    assert service.rules == ("NEUTROPENIA_SEVERE", "FEBRILE_NEUTROPENIA")


@pytest.mark.parametrize(
    ("hook", "rules", "message"),
    [
        (PATIENT_VIEW, ["ORDER_NO_RECENT_CBC"], "ORDER_NO_RECENT_CBC do not run on patient-view"),
        (ORDER_HOOKS[1], ["CBC_STALE", "DATA_QUALITY"], "CBC_STALE do not run on order-sign"),
        (PATIENT_VIEW, ["NO_SUCH_RULE"], "unknown rules NO_SUCH_RULE"),
        ("encounter-start", ["DATA_QUALITY"], "is not supported"),
    ],
)
def test_a_service_listing_a_rule_its_hook_does_not_allow_stops_the_service(
    tmp_path: Path, hook: str, rules: list[str], message: str
) -> None:
    _write_service(tmp_path, hook, rules)
    with pytest.raises(ConfigError, match=message):
        load_services(str(tmp_path))


def _fixture_generator() -> ModuleType:
    """fixtures/generate.py stays stdlib-only (an independent reading of the contract), so it
    keeps its own rule lists; this checks them against the catalogue."""
    path = ROOT / "fixtures" / "generate.py"
    spec = importlib.util.spec_from_file_location("fixture_generator", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fixture_generator_lists_the_catalogue_rules() -> None:
    generator = _fixture_generator()
    assert sorted(generator.PATIENT_VIEW_RULES) == sorted(rule_ids(PATIENT_VIEW))
    for hook in ORDER_HOOKS:
        assert sorted(generator.ORDER_RULES) == sorted(rule_ids(hook))
    assert set(generator.PATIENT_VIEW_RULES) | set(generator.ORDER_RULES) == set(IDS)


def _catalogue_table(path: str, heading: str) -> list[list[str]]:
    """The cells of the rule table under `heading` (rows whose first cell is a rule id)."""
    text = (ROOT / path).read_text()
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and re.match(r"\| [A-Z][A-Z0-9_]+ \|", line)
    ]
    return rows


def _hooks(cell: str) -> set[str]:
    return set(SUPPORTED_HOOKS) if cell == "all" else {h.strip() for h in cell.split(",")}


@pytest.mark.parametrize(
    ("path", "heading"),
    [("README.md", "## Card catalogue"), ("docs/clinical-rules.md", "### 3.1 Catalogue")],
)
def test_the_documented_card_catalogue_lists_each_rule_once_with_its_hooks(
    path: str, heading: str
) -> None:
    rows = _catalogue_table(path, heading)
    documented = [row[0] for row in rows]
    assert sorted(documented) == sorted(IDS)
    for rule, hooks, *_ in rows:
        assert _hooks(hooks) == set(BY_ID[rule].hooks), (path, rule)


def test_the_clinical_contract_lists_the_rules_in_run_order() -> None:
    rows = _catalogue_table("docs/clinical-rules.md", "### 3.1 Catalogue")
    assert [row[0] for row in rows] == IDS
