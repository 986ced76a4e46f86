"""A site profile: the one folder (`CDS_SITE_DIR`) holding what a hospital changes of the
packaged knowledge, each file optional (docs/site-profile.md):

    thresholds.yaml   overrides of knowledge/thresholds.yaml "thresholds" (same keys)
    clinical.yaml     the clinical switches, knowledge/thresholds.yaml "settings" (same keys)
    codes.yaml        local codes ADDED to the packaged value sets (observations by analyte,
                      medication products by ingredient, conditions by group)
    hooks/            service definitions replacing the packaged hooks/

This module reads the folder and checks each file's shape; `load_knowledge` applies it and
checks what needs the packaged files (threshold names, analytes, ingredients, condition
groups, codes that would change a packaged code's meaning). Every refusal is a ConfigError
naming the file and key. The files' content is hashed into the knowledge version.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from cds_service.config import ConfigError

THRESHOLDS_FILE = "thresholds.yaml"
CLINICAL_FILE = "clinical.yaml"
CODES_FILE = "codes.yaml"
HOOKS_FOLDER = "hooks"
_ENTRIES = (THRESHOLDS_FILE, CLINICAL_FILE, CODES_FILE, HOOKS_FOLDER)
# A local code is put as written into the prefetch searches (`system|code,system|code`):
# characters with a meaning there are refused rather than escaped by guess.
_SEARCH_UNSAFE = re.compile(r"[\s,|&#?{}\\$]")
# How a count was made (knowledge/observations.yaml `method`, clinical rules §2.3).
METHODS = ("manual", "automated", "flow")

_CODE_KEYS = {"system", "code", "display"}
_KEYS_BY_SECTION = {
    "observations": _CODE_KEYS | {"method"},
    "medications": _CODE_KEYS | {"strength_mg", "form", "scored"},
    "conditions": _CODE_KEYS,
}


@dataclass(frozen=True)
class LocalCode:
    """One code a site adds to a packaged value set. `meaning` is what it stands for there:
    an analyte (observations.yaml), an ingredient (medications.yaml) or a condition group
    (conditions.yaml)."""

    system: str
    code: str
    meaning: str
    display: str
    where: str  # file and key, named in refusals
    method: str | None = None  # observations: manual | automated | flow
    strength_mg: float | None = None  # medications: the product's strength, if one
    form: str | None = None
    scored: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.system, self.code


@dataclass(frozen=True)
class LocalCodes:
    observations: tuple[LocalCode, ...] = ()
    medications: tuple[LocalCode, ...] = ()
    conditions: tuple[LocalCode, ...] = ()


def _nothing() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class SiteProfile:
    """What a site changes; the default changes nothing (no CDS_SITE_DIR)."""

    folder: str = ""
    thresholds: Mapping[str, Any] = field(default_factory=_nothing)
    clinical: Mapping[str, Any] = field(default_factory=_nothing)
    codes: LocalCodes = field(default_factory=LocalCodes)
    hooks_dir: str = ""  # empty = the packaged hooks/
    digest: str = ""  # hash of the site's files; empty = no site file
    # How refusals name where thresholds and switches came from.
    thresholds_origin: str = "thresholds"
    clinical_origin: str = "clinical settings"


def read_site_profile(folder: str) -> SiteProfile:
    """The site profile in `folder` (empty: none), its files' shapes checked."""
    if not folder:
        return SiteProfile()
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"CDS_SITE_DIR {folder!r} is not a folder")
    _refuse_unknown_entries(root)
    hooks = root / HOOKS_FOLDER
    return SiteProfile(
        folder=folder,
        thresholds=_mapping(root / THRESHOLDS_FILE),
        clinical=_mapping(root / CLINICAL_FILE),
        codes=_local_codes(root / CODES_FILE),
        hooks_dir=str(hooks) if hooks.exists() else "",
        digest=_digest(root),
        thresholds_origin=str(root / THRESHOLDS_FILE),
        clinical_origin=str(root / CLINICAL_FILE),
    )


def _refuse_unknown_entries(root: Path) -> None:
    """A misspelt file (`threshold.yaml`) would be silently ignored: refuse it."""
    for entry in sorted(root.iterdir()):
        name = entry.name
        if name in _ENTRIES or name.startswith(".") or name.upper().startswith("README"):
            continue
        closest = difflib.get_close_matches(name, _ENTRIES, n=1)
        hint = f"; did you mean {closest[0]}?" if closest else ""
        raise ConfigError(f"{entry}: not a site profile file ({', '.join(_ENTRIES)}){hint}")


def _digest(root: Path) -> str:
    files = [root / name for name in _ENTRIES[:3]] + sorted((root / HOOKS_FOLDER).glob("*.yaml"))
    digest = hashlib.sha256()
    present = [f for f in files if f.is_file()]
    for file in present:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:12] if present else ""


def _load(file: Path) -> Any:
    if not file.is_file():
        return None
    try:
        return yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: not valid YAML ({error})") from None


def _mapping(file: Path) -> Mapping[str, Any]:
    data = _load(file)
    if data is None:
        return _nothing()
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise ConfigError(f"{file}: must be a mapping of names to values")
    return MappingProxyType(data)


def _local_codes(file: Path) -> LocalCodes:
    data = _mapping(file)
    unknown = sorted(set(data) - _KEYS_BY_SECTION.keys())
    if unknown:
        raise ConfigError(
            f"{file}: unknown key {unknown[0]!r} (observations, medications, conditions)"
        )
    sections = {
        section: tuple(_section(data[section], f"{file}: {section}", _KEYS_BY_SECTION[section]))
        for section in _KEYS_BY_SECTION
        if data.get(section) is not None
    }
    return LocalCodes(**sections)


def _section(groups: Any, where: str, keys: set[str]) -> list[LocalCode]:
    if not isinstance(groups, dict):
        raise ConfigError(f"{where}: must be a mapping of names to lists of codes")
    codes = []
    for meaning, entries in groups.items():
        if not isinstance(entries, list):
            raise ConfigError(f"{where}.{meaning}: must be a list of codes")
        for index, entry in enumerate(entries):
            codes.append(_local_code(entry, str(meaning), f"{where}.{meaning}[{index}]", keys))
    return codes


def _local_code(entry: Any, meaning: str, where: str, keys: set[str]) -> LocalCode:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping ({', '.join(sorted(keys))})")
    unknown = sorted(set(entry) - keys, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} ({', '.join(sorted(keys))})")
    for key in sorted(_CODE_KEYS):
        # A code must be a quoted string: YAML reads 0123 as a number, and 1e3 as 1000.0.
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise ConfigError(f"{where}.{key}: must be a non-empty string (quote a code)")
    for key in ("system", "code"):
        if _SEARCH_UNSAFE.search(entry[key].strip()):
            raise ConfigError(
                f"{where}.{key}: {entry[key]!r} holds a character a FHIR search cannot carry "
                "as written (space , | & # ? { } \\ $)"
            )
    method = entry.get("method")
    if method is not None and method not in METHODS:
        raise ConfigError(f"{where}.method: must be one of {', '.join(METHODS)}")
    strength = entry.get("strength_mg")
    if strength is not None and (
        isinstance(strength, bool) or not isinstance(strength, int | float) or strength <= 0
    ):
        raise ConfigError(f"{where}.strength_mg: must be a positive number of mg")
    if not isinstance(entry.get("form", ""), str):
        raise ConfigError(f"{where}.form: must be a string (tablet, capsule, ...)")
    if not isinstance(entry.get("scored", False), bool):
        raise ConfigError(f"{where}.scored: must be true or false")
    return LocalCode(
        system=entry["system"].strip(),
        code=entry["code"].strip(),
        meaning=meaning,
        display=" ".join(entry["display"].split()),
        where=where,
        method=method,
        strength_mg=float(strength) if strength is not None else None,
        form=entry.get("form"),
        scored=bool(entry.get("scored", False)),
    )


def add_local_codes(
    table: MutableMapping[tuple[str, str], str],
    local: tuple[LocalCode, ...],
    known: Mapping[str, Any],
    what: str,
) -> None:
    """Add each local code to `table` ((system, code) -> meaning), refusing a meaning that is
    not one of `known` (an analyte, an ingredient, a condition group: `what`) and a code the
    table already holds with another meaning: a site adds codes, it never changes one."""
    for code in local:
        if code.meaning not in known:
            closest = difflib.get_close_matches(code.meaning, list(known), n=1)
            hint = f"; did you mean {closest[0]}?" if closest else ""
            raise ConfigError(f"{code.where}: {code.meaning!r} is not a known {what}{hint}")
        held = table.get(code.key)
        if held is not None and held != code.meaning:
            raise ConfigError(
                f"{code.where}: {code.system}|{code.code} already means {held!r}; a local "
                f"code must not give a code another meaning ({code.meaning!r})"
            )
        table[code.key] = code.meaning
