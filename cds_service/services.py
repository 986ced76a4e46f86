"""CDS service definitions: one YAML file per service in hooks/ (id, hook, title,
description, prefetch templates, and optionally rules). Adding a service is adding a file;
the loader checks each definition at start-up so a typo never reaches an EHR.

A service runs every catalogue rule its hook allows (rules/catalogue.py), unless it lists its
`rules:` (a site may run a subset, e.g. without the steroid note); each listed rule must be a
catalogue rule allowed on the service's hook. They run in catalogue order whatever the order of
the list. The packaged services list none: the catalogue is the one place a rule is declared.

A definition with `extends: <service id>` starts from that service's keys and replaces the
ones it gives. Prefetch templates may name the knowledge's code lists as
`{{knowledge.<list>}}` (see `Knowledge.code_lists`), filled at loading."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cds_service.config import ConfigError
from cds_service.fhir.templates import fill_code_lists
from cds_service.knowledge import Knowledge, load_knowledge
from cds_service.knowledge.site import read_site_profile
from cds_service.protocol.hooks import SUPPORTED_HOOKS
from cds_service.rule_modes import resolve_rule_modes
from cds_service.rules.answer import RuleMode
from cds_service.rules.catalogue import BY_ID, rule_ids

# CDS Hooks 2.0 prefetch tokens (§prefetch-tokens): context fields and the four user tokens.
_TOKEN = re.compile(r"\{\{(.*?)\}\}")
_ALLOWED_TOKEN = re.compile(
    r"^(context\.(userId|patientId|encounterId)|userPractitionerId|userPractitionerRoleId"
    r"|userPatientId|userRelatedPersonId)$"
)
_SERVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str]
    rules: tuple[str, ...]
    # The rules not live (CDS_RULE_MODES, cds_service/rule_modes.py): silent or off.
    rule_modes: Mapping[str, RuleMode] = field(default_factory=dict)

    def discovery_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "hook": self.hook,
            "title": self.title,
            "description": self.description,
            "id": self.id,
        }
        if self.prefetch:
            entry["prefetch"] = dict(self.prefetch)
        return entry


def _definition(
    data: Any, origin: str, code_lists: Mapping[str, Sequence[tuple[str, str]]]
) -> ServiceDefinition:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: a service definition must be a mapping")
    missing = [k for k in ("id", "hook", "title", "description") if not data.get(k)]
    if missing:
        raise ConfigError(f"{origin}: missing {', '.join(missing)}")
    if not _SERVICE_ID.match(str(data["id"])):
        raise ConfigError(f"{origin}: id must be letters, digits, '.', '_' or '-'")
    if data["hook"] not in SUPPORTED_HOOKS:
        raise ConfigError(f"{origin}: hook {data['hook']!r} is not supported")
    rules = _rules(data, origin)
    prefetch = {
        str(k): fill_code_lists(str(v), code_lists) for k, v in (data.get("prefetch") or {}).items()
    }
    for key, template in prefetch.items():
        for token in _TOKEN.findall(template):
            if not _ALLOWED_TOKEN.match(token.strip()):
                raise ConfigError(
                    f"{origin}: prefetch {key} uses {{{{{token}}}}}, which is neither "
                    "a CDS Hooks 2.0 prefetch token nor a non-empty code list of the knowledge "
                    f"({', '.join('knowledge.' + name for name in code_lists)})"
                )
    return ServiceDefinition(
        id=str(data["id"]),
        hook=str(data["hook"]),
        title=" ".join(str(data["title"]).split()),
        description=" ".join(str(data["description"]).split()),
        prefetch=prefetch,
        rules=rules,
    )


def _rules(data: dict[str, Any], origin: str) -> tuple[str, ...]:
    """The rules a service runs: its `rules:` list, checked against the catalogue, or when it
    gives none every catalogue rule of its hook (catalogue order)."""
    hook = str(data["hook"])
    if "rules" not in data:
        return rule_ids(hook)
    listed = data["rules"]
    # An empty or misspelt list is a mistake, not "no rules" (leave the key out for all).
    if not listed or not isinstance(listed, list) or not all(isinstance(r, str) for r in listed):
        raise ConfigError(
            f"{origin}: rules must list rule ids (leave it out to run every rule of {hook})"
        )
    unknown = set(listed) - BY_ID.keys()
    if unknown:
        raise ConfigError(f"{origin}: unknown rules {', '.join(sorted(unknown))}")
    elsewhere = {rule for rule in listed if hook not in BY_ID[rule].hooks}
    if elsewhere:
        raise ConfigError(f"{origin}: rules {', '.join(sorted(elsewhere))} do not run on {hook}")
    return tuple(listed)


def _extended(data: Any, definitions: Mapping[str, Any], origin: str) -> Any:
    if not isinstance(data, dict) or "extends" not in data:
        return data
    # One level only, so every key of a definition is in its file or in the one it names.
    base = definitions.get(str(data["extends"]))
    if not isinstance(base, dict) or "extends" in base:
        raise ConfigError(
            f"{origin}: extends {data['extends']!r}, which is not the id of a service "
            "defined without extends"
        )
    return {**base, **{key: value for key, value in data.items() if key != "extends"}}


def load_services(
    hooks_dir: str = "",
    knowledge: Knowledge | None = None,
    rule_modes: Mapping[str, Any] | None = None,
) -> dict[str, ServiceDefinition]:
    """All service definitions, by id. `hooks_dir` empty = the packaged hooks/ folder, else
    a site profile's hooks/. `knowledge` (default: the packaged one) gives the code lists
    prefetch names; `rule_modes` is the CDS_RULE_MODES setting (default: every rule live)."""
    if hooks_dir:
        files = sorted(Path(hooks_dir).glob("*.yaml"))
        if not files:
            raise ConfigError(f"{hooks_dir}: no *.yaml service definitions")
        texts = [(str(f), f.read_text()) for f in files]
    else:
        package = resources.files("cds_service.hooks")
        texts = [
            (p.name, p.read_text())
            for p in sorted(package.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".yaml")
        ]
    code_lists = (knowledge or load_knowledge()).code_lists()
    documents = [(origin, yaml.safe_load(text)) for origin, text in texts]
    by_id = {str(d.get("id")): d for _, d in documents if isinstance(d, dict)}
    services: dict[str, ServiceDefinition] = {}
    for origin, data in documents:
        service = _definition(_extended(data, by_id, origin), origin, code_lists)
        if service.id in services:
            raise ConfigError(f"{origin}: duplicate service id {service.id!r}")
        services[service.id] = service
    modes = resolve_rule_modes(rule_modes or {}, {s.id: s.rules for s in services.values()})
    return {id_: replace(service, rule_modes=modes[id_]) for id_, service in services.items()}


def load_site(
    site_dir: str, rule_modes: Mapping[str, Any] | None = None
) -> tuple[Knowledge, dict[str, ServiceDefinition]]:
    """The knowledge and the service definitions of a site profile (CDS_SITE_DIR; empty = the
    packaged ones), every file checked: what start-up and `cds-service check-site` load."""
    site = read_site_profile(site_dir)
    knowledge = load_knowledge(site=site)
    return knowledge, load_services(site.hooks_dir, knowledge, rule_modes)
