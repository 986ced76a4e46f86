"""The README is the front door: every section the project's users need, each once, and no
paragraph twice (an edit that pastes a section again, or leaves half of one behind, fails)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SECTIONS = (
    "Two commands",
    "Trying it in the public CDS Hooks sandbox",
    "Card catalogue",
    "Configuration",
    "Security",
    "Running in production",
    "Benchmarks",
    "Design",
)


def test_every_section_is_there_once() -> None:
    headings = Counter(re.findall(r"^## (.+)$", README, flags=re.MULTILINE))
    assert [name for name, seen in headings.items() if seen > 1] == []
    assert [name for name in SECTIONS if name not in headings] == []


def test_no_line_of_prose_is_repeated() -> None:
    # Table rows and code may repeat; a long line of prose never should.
    prose = [
        line.strip()
        for line in README.splitlines()
        if len(line.strip()) > 60 and not line.lstrip().startswith(("|", "#", "```"))
    ]
    assert [line for line, seen in Counter(prose).items() if seen > 1] == []


def test_the_front_door_stays_short() -> None:
    # What it does, two commands, the sandbox, the catalogue, configuration, production and
    # the design; the rest lives in docs/ and benchmarks/ (issue 25: about 250 lines at most).
    assert len(README.splitlines()) <= 250


def test_every_file_the_readme_names_exists() -> None:
    root = Path(__file__).resolve().parents[1]
    named = set(
        re.findall(r"`((?:docs|benchmarks|deploy|cds_service|fixtures|tests)/[^`*{ ]+)`", README)
    )
    assert named, "the README names no file: the pattern is wrong"
    assert sorted(path for path in named if not (root / path).exists()) == []
