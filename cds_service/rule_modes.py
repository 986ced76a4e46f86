"""Rule modes per service (CDS_RULE_MODES, issue 26): `live` (shown), `silent` (run and
recorded, never shown: a committee's silent pilot) or `off` (not run).

The setting is a JSON object keyed by service id, each an object from rule id to mode; `*`
stands for every service or every rule, and the most specific entry wins (service and rule,
then service and `*`, then `*` and rule, then `*` and `*`). An unknown service, a rule the
service does not run or an unknown mode stops the service at start-up with one line.

    CDS_RULE_MODES='{"*": {"*": "silent"}}'                               # a silent pilot
    CDS_RULE_MODES='{"*": {"*": "silent", "FEBRILE_NEUTROPENIA": "live"}}' # staged go-live
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, get_args

from cds_service.config import ConfigError
from cds_service.rules.answer import RuleMode

EVERY = "*"
MODES: tuple[str, ...] = get_args(RuleMode)
_SETTING = "CDS_RULE_MODES"


def resolve_rule_modes(
    setting: Mapping[str, Any], service_rules: Mapping[str, tuple[str, ...]]
) -> dict[str, Mapping[str, RuleMode]]:
    """Per service id, the mode of each of its rules that is not `live`. `service_rules`
    gives each service's rules."""
    _check(setting, service_rules)
    modes: dict[str, Mapping[str, RuleMode]] = {}
    for service_id, rules in service_rules.items():
        chosen = {rule: _mode_of(setting, service_id, rule) for rule in rules}
        modes[service_id] = MappingProxyType(
            {rule: mode for rule, mode in chosen.items() if mode != "live"}
        )
    return modes


def describe(modes: Mapping[str, Mapping[str, RuleMode]]) -> str:
    """One line for the start-up log: which rules are silent or off, per service."""
    parts = [
        f"{service_id}: {mode} {', '.join(r for r, m in rules.items() if m == mode)}"
        for service_id, rules in sorted(modes.items())
        for mode in ("silent", "off")
        if mode in rules.values()
    ]
    return "; ".join(parts) or "every rule live"


def _mode_of(setting: Mapping[str, Any], service_id: str, rule: str) -> RuleMode:
    for service_key, rule_key in (
        (service_id, rule),
        (service_id, EVERY),
        (EVERY, rule),
        (EVERY, EVERY),
    ):
        mode = (setting.get(service_key) or {}).get(rule_key)
        if mode is not None:
            return mode  # type: ignore[no-any-return]  # checked in _check
    return "live"


def _check(setting: Mapping[str, Any], service_rules: Mapping[str, tuple[str, ...]]) -> None:
    if not isinstance(setting, Mapping):
        raise ConfigError(f"{_SETTING} must be a JSON object keyed by service id")
    every_rule = {rule for rules in service_rules.values() for rule in rules}
    for service_id, rules in setting.items():
        name = f"{_SETTING}[{service_id!r}]"
        if service_id != EVERY and service_id not in service_rules:
            known = ", ".join(sorted(service_rules))
            raise ConfigError(f"{name}: no such service (services: {known}, or *)")
        if not isinstance(rules, Mapping):
            raise ConfigError(f"{name} must be an object from rule id to mode")
        runs = every_rule if service_id == EVERY else set(service_rules[service_id])
        for rule, mode in rules.items():
            if rule != EVERY and rule not in runs:
                raise ConfigError(f"{name}: {rule!r} is not a rule this service runs")
            if mode not in MODES:
                raise ConfigError(f"{name}[{rule!r}]: mode must be live, silent or off")
