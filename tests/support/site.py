"""A throw-away site profile folder (CDS_SITE_DIR, docs/site-profile.md) for tests: each file
is written only when given."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

EXAMPLE_SITE = str(Path(__file__).parents[2] / "deploy" / "site-example")


def write_site(
    folder: Path,
    *,
    thresholds: Mapping[str, Any] | None = None,
    clinical: Mapping[str, Any] | None = None,
    codes: Mapping[str, Any] | None = None,
) -> str:
    """`folder` made a site profile holding the given files; its path, as CDS_SITE_DIR."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in (
        ("thresholds.yaml", thresholds),
        ("clinical.yaml", clinical),
        ("codes.yaml", codes),
    ):
        if content is not None:
            (folder / name).write_text(yaml.safe_dump(dict(content), sort_keys=False))
    return str(folder)
