"""One configuration model: every setting declared once, and its check, its environment
variable (CDS_* or GUNICORN_*) and its line in docs/configuration.md derived from that."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cds_service.cli import main
from cds_service.config import (
    DECLARED,
    DOCS_END,
    DOCS_START,
    MOVED_TO_SITE_PROFILE,
    VARIABLES,
    ConfigError,
    documentation_table,
    load_config,
)
from cds_service.settings_model import Declared

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"


def _wrong_type(item: Declared) -> object:
    """A value no setting of this type accepts: words for a number, a number otherwise."""
    numeric = item.expected().startswith(("a whole number", "a number"))
    return "abc" if numeric else 123


def test_every_setting_has_one_line_of_documentation() -> None:
    assert len(DECLARED) >= 50
    for item in DECLARED.values():
        assert item.declaration.doc.strip() and "\n" not in item.declaration.doc, item.name


def test_docs_hold_the_generated_table() -> None:
    """Regenerate with `cds-service settings --update docs/configuration.md`."""
    text = DOCS.read_text()
    table = text.split(DOCS_START, 1)[1].split(DOCS_END, 1)[0]
    assert table == documentation_table()
    for item in DECLARED.values():
        assert f"| `{item.name}` | `{item.variable}` |" in table


def test_the_settings_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings"]) == 0
    assert capsys.readouterr().out == documentation_table()


def test_the_settings_command_updates_the_page(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    page.write_text(f"# Intro\n{DOCS_START}| stale |\n{DOCS_END}\n\n## After\n")
    assert main(["settings", "--update", str(page)]) == 0
    text = page.read_text()
    assert text == f"# Intro\n{DOCS_START}{documentation_table()}{DOCS_END}\n\n## After\n"


def test_every_default_passes_its_own_check() -> None:
    for item in DECLARED.values():
        item.check(item.default())


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_a_value_of_the_wrong_type_is_refused_for_every_setting(name: str) -> None:
    item = DECLARED[name]
    with pytest.raises(ConfigError, match=f"^{item.variable} must be "):
        load_config({"ENV": "testing", name: _wrong_type(item)}, environ={})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CDS_FHIR_MAX_PAGES", "abc", "CDS_FHIR_MAX_PAGES must be a whole number, 1 or more"),
        ("CDS_FHIR_MAX_PAGES", "2.5", "CDS_FHIR_MAX_PAGES must be a whole number"),
        ("CDS_FHIR_CACHE_SECONDS", "301", "CDS_FHIR_CACHE_SECONDS must be a number from 0 to 300"),
        ("CDS_FHIR_DEADLINE_SECONDS", "0", "CDS_FHIR_DEADLINE_SECONDS must be a number above 0"),
        ("CDS_FHIR_DEADLINE_SECONDS", "Infinity", "CDS_FHIR_DEADLINE_SECONDS must be a number"),
        ("CDS_SNOOZE_DAYS", "true", "CDS_SNOOZE_DAYS must be a whole number"),
        ("CDS_BEHIND_PROXY", "yes", "CDS_BEHIND_PROXY must be true or false"),
        ("CDS_ENV", "staging", "CDS_ENV must be development, production or testing"),
        ("CDS_JWT_ALGORITHMS", '["HS256"]', "CDS_JWT_ALGORITHMS must be a non-empty JSON list"),
        ("GUNICORN_WORKERS", "abc", "GUNICORN_WORKERS must be a whole number, 1 or more"),
        ("GUNICORN_WORKERS", "0", "GUNICORN_WORKERS must be a whole number, 1 or more"),
        ("GUNICORN_WORKER_CLASS", "eventlet", "GUNICORN_WORKER_CLASS must be gevent, sync or"),
        ("GUNICORN_BIND", "8080", "GUNICORN_BIND must be a non-empty string \\(quote"),
    ],
)
def test_an_environment_value_is_checked_against_its_declaration(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        load_config(environ={variable: value})


def test_bounds_are_inclusive_where_declared_so() -> None:
    settings = load_config(
        environ={"CDS_FHIR_CACHE_SECONDS": "300", "CDS_VALIDATION_CACHE_SIZE": "0"}
    )
    assert settings.fhir_cache_seconds == 300 and settings.validation_cache_size == 0


def test_gunicorn_settings_come_from_their_own_variables() -> None:
    environ = {"GUNICORN_WORKERS": "3", "GUNICORN_ACCESSLOG": "", "GUNICORN_CMD_ARGS": "-t 5"}
    settings = load_config(environ=environ)  # GUNICORN_CMD_ARGS is gunicorn's own
    assert settings.gunicorn_workers == 3 and settings.gunicorn_accesslog == ""
    assert load_config({"GUNICORN_WORKERS": 2}, environ={}).gunicorn_workers == 2


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("GUNICORN_WORKER", "^GUNICORN_WORKER is not a setting.*did you mean GUNICORN_WORKERS\\?"),
        ("GUNICORN_ACCESS_LOG", "did you mean GUNICORN_ACCESSLOG\\?"),
        ("CDS_GUNICORN_WORKERS", "^CDS_GUNICORN_WORKERS is not a setting"),
        ("CDS_WORKERS", "^CDS_WORKERS is not a setting"),
    ],
)
def test_a_misspelt_server_variable_is_refused(variable: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ={variable: "2"})


def _gunicorn_conf(**environ: str) -> subprocess.CompletedProcess[str]:
    """Import the gunicorn config file as gunicorn's master does, in a fresh process."""
    code = "from cds_service.ops import gunicorn_conf as c; print(c.workers, c.accesslog)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "GUNICORN_"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_gunicorn_config_reads_the_declared_settings() -> None:
    done = _gunicorn_conf(GUNICORN_WORKERS="3", GUNICORN_ACCESSLOG="")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "None"]


def test_a_bad_gunicorn_variable_stops_the_master_in_one_line() -> None:
    done = _gunicorn_conf(GUNICORN_WORKRES="3")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "GUNICORN_WORKRES is not a setting" in done.stderr and "GUNICORN_WORKERS" in done.stderr


# Named in the documents on purpose without being settings: the misspelt example the README
# refuses, and the settings that became files of the site profile.
NOT_SETTINGS = {"CDS_SNOOZE_DAY"} | {f"CDS_{name}" for name in MOVED_TO_SITE_PROFILE}


def test_every_setting_the_documents_name_is_declared() -> None:
    """The README's short table and the pages of docs/ name settings by hand: each name must
    be a declared one (a renamed or misspelt setting in a document fails here)."""
    root = Path(__file__).resolve().parents[2]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    named = {
        (page.name, name)
        for page in pages
        for name in re.findall(r"\b(?:CDS|GUNICORN)_[A-Z0-9_]*[A-Z0-9]\b", page.read_text())
    }
    assert len({name for _, name in named}) > 40, "the pattern finds the settings"
    assert sorted((page, n) for page, n in named if n not in VARIABLES | NOT_SETTINGS) == []
