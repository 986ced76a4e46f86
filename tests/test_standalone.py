"""The repository stands alone: no tracked file points outside it.

A fresh clone has nothing beside it, so a tracked file fails this test when it refers to:
- `../shared` (the reference folder that exists only on the project's machines);
- an absolute path under a person's or a build machine's own folders: `/work/`, `/home/`,
  `/root/`, `/Users/`, `/mnt/`, `/media/`, or a Windows `C:\\Users\\`;
- a Python file climbing above the repository root with `Path(__file__)...parents[N]`.

Allowed on purpose: system and image paths that are the same on every machine and are not the
developer's files (`/usr/bin/chromedriver` in tests, `/etc/nginx/...` and `/var/lib/...` in
deploy files, `/app` and `/tmp` inside the container image), and URLs (`https://x.org/home/`
is not a path: a root must not follow a word character, a dot, a colon, a slash or a hyphen).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE_REFERENCES = re.compile(
    r"\.\./shared(?![\w-])"
    r"|(?<![\w.:/-])/(?:work|home|root|Users|mnt|media)/"
    r"|\b[A-Za-z]:\\\\?Users\\"
)
PARENTS_INDEX = re.compile(r"Path\(__file__\)(?:\.resolve\(\))?\.parents\[(\d+)\]")


def _tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [Path(name) for name in listing.split("\0") if name and (ROOT / name).is_file()]


def _text(path: Path) -> str | None:
    try:
        return (ROOT / path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None  # binary: no paths to read


def outside_references(path: Path, text: str) -> list[str]:
    """The references in one file's text that point outside the repository."""
    found = [match.group(0) for match in OUTSIDE_REFERENCES.finditer(text)]
    if path.suffix == ".py":
        depth = len(path.parts)  # parents[depth - 1] is the repository root
        found += [
            match.group(0) for match in PARENTS_INDEX.finditer(text) if int(match.group(1)) >= depth
        ]
    return found


def test_no_tracked_file_refers_outside_the_repository() -> None:
    offenders = {}
    for path in _tracked_files():
        if path == Path(__file__).relative_to(ROOT):
            continue  # this file names the patterns it looks for
        text = _text(path)
        if text is not None and (found := outside_references(path, text)):
            offenders[str(path)] = sorted(set(found))
    assert offenders == {}


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("README.md", "The contract is `../shared/clinical-spec.md`."),
        ("fixtures/generate.py", 'SYNTHEA_DIR = Path("/work/shared/fhir-data")'),
        ("docs/x.md", "cd /home/alice/repo"),
        ("docs/x.md", "open /Users/bob/cds"),
        ("docs/x.md", "see C:\\Users\\carol\\cds"),
        ("tests/api/test_api.py", 'X = Path(__file__).resolve().parents[3] / "shared"'),
    ],
)
def test_each_kind_of_outside_reference_is_found(path: str, text: str) -> None:
    assert outside_references(Path(path), text)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("tests/governance/test_dashboard.py", 'CHROMEDRIVER = "/usr/bin/chromedriver"'),
        ("deploy/nginx.conf", "# mounted as /etc/nginx/conf.d/default.conf"),
        ("Dockerfile", "ENV PROMETHEUS_MULTIPROC_DIR=/var/lib/cds-service/metrics"),
        ("docs/x.md", "https://example.org/home/page and https://h.example/work/"),
        ("tests/support/scenarios.py", 'F = Path(__file__).resolve().parents[2] / "fixtures"'),
        ("docs/x.md", "the ../shared-secret is not the folder"),
    ],
)
def test_system_paths_urls_and_paths_inside_the_repository_pass(path: str, text: str) -> None:
    assert outside_references(Path(path), text) == []
