"""Issue 24: `cds-service evaluate` and `fixture` read a file as the HTTP endpoint reads a
body: size cap, strict JSON, nesting cap; a file they cannot use is one line on stderr and
exit status 2, never a traceback (or, for /dev/zero, all the memory there is)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cds_service.cli import main

FIXTURE = Path(__file__).parents[2] / "fixtures" / "patient-view" / "sle-moderate-neutropenia.json"


def _bundle(*resources: dict) -> bytes:
    entries = [{"resource": r} for r in resources]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode()


# The 12 kinds of bad file of the review (contents; None: the path is given as is).
HOSTILE = {
    "deep nesting": b'{"hook": "patient-view", "context": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
    "top-level list": b'[{"hook": "patient-view"}]',
    "top-level string": b'"patient-view"',
    "Patient without id": _bundle({"resourceType": "Patient"}),
    "two Patients": _bundle(
        {"resourceType": "Patient", "id": "a"}, {"resourceType": "Patient", "id": "b"}
    ),
    "bad UTF-8": b'{"hook": "patient-view", "hookInstance": "\xff\xfe"}',
    "lone surrogate": b'{"hook": "patient-view", "hookInstance": "\\ud800"}',
    "5,000-digit integer": b'{"hook": "patient-view", "n": 1' + b"0" * 5000 + b"}",
    "NaN": b'{"hook": "patient-view", "value": NaN}',
    "empty file": b"",
    "/dev/zero": None,
    "a directory": None,
}
PATHS = {"/dev/zero": "/dev/zero", "a directory": "/"}


def _path(tmp_path: Path, kind: str) -> str:
    content = HOSTILE[kind]
    if content is None:
        return PATHS[kind]
    path = tmp_path / "hostile.json"
    path.write_bytes(content)
    return str(path)


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("cds-service: ")
    assert captured.err.count("\n") == 1, captured.err
    return captured.err


@pytest.mark.parametrize("kind", HOSTILE)
def test_evaluate_refuses_a_hostile_file_in_one_line(tmp_path, capsys, kind):
    _refused(capsys, "evaluate", _path(tmp_path, kind))


@pytest.mark.parametrize("kind", HOSTILE)
def test_fixture_refuses_a_hostile_file_in_one_line(tmp_path, capsys, kind):
    _refused(capsys, "fixture", _path(tmp_path, kind))


def test_the_reasons_are_said(tmp_path, capsys):
    said = {
        "deep nesting": "nested more than 64 levels",
        "NaN": "not valid JSON",
        "top-level list": "not a JSON object",
        "Patient without id": "Patient has no id",
        "/dev/zero": "larger than 8388608 bytes",
        "a directory": "cannot be read",
    }
    for kind, reason in said.items():
        assert reason in _refused(capsys, "evaluate", _path(tmp_path, kind)), kind


@pytest.mark.parametrize("date", ["2026-02-30", "9999-12-31T23:59:00Z"])
def test_fixture_refuses_a_date_it_cannot_move(tmp_path, capsys, date):
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"hook": "patient-view", "context": {"date": date}}))
    assert "cannot be moved" in _refused(capsys, "fixture", str(path))


def test_evaluate_refuses_a_bad_now(capsys):
    assert "--now" in _refused(capsys, "evaluate", str(FIXTURE), "--now", "yesterday")
    assert "time zone" in _refused(capsys, "evaluate", str(FIXTURE), "--now", "2026-01-15T12:00")


def test_good_files_still_work(capsys):
    assert main(["evaluate", str(FIXTURE), "--now", "2026-01-15T12:00:00Z"]) == 0
    assert "NEUTROPENIA_MODERATE" in capsys.readouterr().out
    assert main(["fixture", str(FIXTURE)]) == 0
    assert json.loads(capsys.readouterr().out)["hook"] == "patient-view"
