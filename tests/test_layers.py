"""The layers hold: the parts below the app never import the parts above them, which hand
them what they need instead (app.py, the composition root). Read from the source's imports,
lazy ones included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cds_service"

# Above the app's parts: the launcher, the app and its views, and the runtime they share.
TOP = ("cds_service.serving", "cds_service.cli", "cds_service.app", "cds_service.api")
TOP += ("cds_service.runtime", "cds_service.engine")
NEVER = {
    # The FHIR client reports to an observer it is given; it knows neither metrics nor Flask.
    "fhir": (*TOP, "cds_service.ops", "cds_service.governance", "cds_service.record", "flask"),
    # What runs the service underneath the app: the app gives it what it reads.
    "ops": (*TOP, "cds_service.governance", "cds_service.security", "cds_service.fhir"),
    # Governance gets its Storage and settings from the root, not from the runtime.
    "governance": TOP,
    "security": (*TOP, "cds_service.ops", "cds_service.governance"),
    # The rules read the record (dates and days through the neutral cds_service/days.py).
    "rules": (*TOP, "cds_service.fhir", "cds_service.ops", "cds_service.governance", "flask"),
    "record": (*TOP, "cds_service.rules", "cds_service.ops", "cds_service.governance", "flask"),
}


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, and every name it takes from one (`a.b.name`)."""
    package = path.relative_to(PACKAGE.parent).parent.parts
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, *([node.module] if node.module else [])))
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("folder", sorted(NEVER))
def test_a_lower_layer_imports_nothing_above_it(folder: str) -> None:
    taken = {
        f"{path.relative_to(PACKAGE.parent)} -> {name}"
        for path in (PACKAGE / folder).rglob("*.py")
        for name in imported_modules(path)
        if any(name == above or name.startswith(f"{above}.") for above in NEVER[folder])
    }
    assert taken == set()
