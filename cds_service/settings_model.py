"""How a setting is declared once and everything else is derived from that declaration.

A setting is a field of a frozen dataclass whose default is `setting(...)`: its name and type
are the field's, its bounds and one line of documentation the declaration's. From these come
the environment variable that sets it, the check of a value (type, bounds, choices), the
message refusing a bad one, the refusal of unknown names, and the settings table of
docs/configuration.md (`cds-service settings`). Checks that tie several settings together
stay explicit functions of the settings (cds_service/config.py).

Environment values are parsed as JSON when they parse (numbers, booleans, lists, objects),
otherwise taken as strings: `CDS_RULE_MODES='{"*": {"LYMPHOPENIA_INFO": "silent"}}'`.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal, get_args, get_origin, get_type_hints

from cds_service.config_error import ConfigError

ENV_PREFIX = "CDS_"
# The production server's settings keep the names gunicorn users know: GUNICORN_WORKERS.
SERVER_PREFIX = "GUNICORN_"
# Read by gunicorn itself, not a setting of this service.
GUNICORN_OWN_VARIABLES = frozenset({"GUNICORN_CMD_ARGS"})
_PREFIXES = (ENV_PREFIX, SERVER_PREFIX)
_METADATA_KEY = "setting"


@dataclass(frozen=True)
class Declaration:
    """What a setting's declaration adds to its field's name and type."""

    doc: str
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # a lower bound the value must exceed (a positive time)
    non_empty: bool = False
    one_string_is_a_list: bool = False  # a list setting given one string holds that one
    valid: Callable[[Any], bool] | None = None  # a further check of the value's form...
    expected: str = ""  # ...and what it asks for ("a redis:// URL")
    shown_default: str = ""  # the default as the table says it, when it depends on the machine


def setting(
    default: Any = MISSING,
    *,
    doc: str,
    default_factory: Callable[[], Any] | None = None,
    **declared: Any,
) -> Any:
    """A field of a settings dataclass: its default and its declaration."""
    metadata = {_METADATA_KEY: Declaration(doc=doc, **declared)}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    if isinstance(default, Mapping):
        return field(default_factory=lambda: read_only(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def read_only(value: Any) -> Any:
    """A value as a frozen settings object holds it: lists become tuples and objects
    read-only copies, so no caller can change a setting after start-up."""
    if isinstance(value, list | tuple):
        return tuple(value)
    if isinstance(value, Mapping):
        return MappingProxyType(copy.deepcopy(dict(value)))
    return value


def plain(value: Any) -> Any:
    """The JSON form of a setting's value (tuples as lists, objects as dicts)."""
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    return value


def _either(words: Iterable[str]) -> str:
    *first, last = list(words)
    return f"{', '.join(first)} or {last}" if first else last


def _is_number(value: Any, whole: bool) -> bool:
    kinds = int if whole else int | float
    return isinstance(value, kinds) and not isinstance(value, bool)


@dataclass(frozen=True)
class Declared:
    """One setting: `FHIR_MAX_PAGES`, set by `CDS_FHIR_MAX_PAGES`, read as
    `settings.fhir_max_pages`."""

    attribute: str
    hint: Any
    declaration: Declaration
    default_value: Any
    default_factory: Callable[[], Any] | None

    @property
    def name(self) -> str:
        """The key of the mapping given to create_app."""
        return self.attribute.upper()

    @property
    def variable(self) -> str:
        """The environment variable that sets it."""
        return self.name if self.name.startswith(SERVER_PREFIX) else ENV_PREFIX + self.name

    def default(self) -> Any:
        return self.default_factory() if self.default_factory else self.default_value

    def shown_default(self) -> str:
        return self.declaration.shown_default or f"`{json.dumps(plain(self.default()))}`"

    def expected(self) -> str:
        """What a value must be, in words: the type column and the refusal say the same."""
        hint, optional = _without_none(self.hint)
        if self.declaration.expected:
            described = self.declaration.expected
        elif hint is bool:
            return "true, false or null" if optional else "true or false"
        elif hint in (int, float):
            described = ("a whole number" if hint is int else "a number") + self._bounds()
        elif hint is str:
            described = "a non-empty string" if self.declaration.non_empty else "a string"
        elif get_origin(hint) is Literal:
            described = _either(get_args(hint))
        elif get_origin(hint) is tuple:
            item = get_args(hint)[0]
            of = f"of {_either(get_args(item))}" if get_origin(item) is Literal else "of strings"
            described = f"a {'non-empty ' if self.declaration.non_empty else ''}JSON list {of}"
            if self.declaration.one_string_is_a_list:
                described += ", or one string"
        else:
            described = "a JSON object"
        return f"{described}, or null" if optional else described

    def _bounds(self) -> str:
        low, high, above = (
            self.declaration.minimum,
            self.declaration.maximum,
            self.declaration.above,
        )
        if low is not None and high is not None:
            return f" from {low:g} to {high:g}"
        if low is not None:
            return f", {low:g} or more"
        return f" above {above:g}" if above is not None else ""

    def check(self, value: Any) -> Any:
        """The value as the settings hold it, or ConfigError naming the variable."""
        hint, optional = _without_none(self.hint)
        if optional and value is None:
            return None
        if (
            get_origin(hint) is tuple
            and self.declaration.one_string_is_a_list
            and isinstance(value, str)
        ):
            value = [value]
        if not self._fits(hint, value):
            numeric = hint is str and _is_number(value, whole=False)
            quote = " (quote a numeric one: '\"123\"')" if numeric else ""
            raise ConfigError(f"{self.variable} must be {self.expected()}{quote}")
        return read_only(value)

    def _fits(self, hint: Any, value: Any) -> bool:
        declared = self.declaration
        if hint is bool:
            fits = isinstance(value, bool)
        elif hint in (int, float):
            fits = _is_number(value, whole=hint is int) and self._within(value)
        elif hint is str:
            fits = isinstance(value, str) and bool(value or not declared.non_empty)
        elif get_origin(hint) is Literal:
            fits = isinstance(value, str) and value in get_args(hint)
        elif get_origin(hint) is tuple:
            item = get_args(hint)[0]
            choices = get_args(item) if get_origin(item) is Literal else None
            fits = (
                isinstance(value, list | tuple)
                and bool(value or not declared.non_empty)
                and all(isinstance(v, str) and v and (not choices or v in choices) for v in value)
            )
        else:
            fits = isinstance(value, Mapping) and all(isinstance(key, str) for key in value)
        return fits and (declared.valid is None or declared.valid(value))

    def _within(self, value: float) -> bool:
        low, high, above = (
            self.declaration.minimum,
            self.declaration.maximum,
            self.declaration.above,
        )
        return (
            math.isfinite(value)  # JSON parsing reads "Infinity" and "NaN" as numbers
            and (low is None or value >= low)
            and (high is None or value <= high)
            and (above is None or value > above)
        )


def _without_none(hint: Any) -> tuple[Any, bool]:
    """`X | None` -> (X, True); X -> (X, False)."""
    if isinstance(hint, types.UnionType) and type(None) in get_args(hint):
        others = [arg for arg in get_args(hint) if arg is not type(None)]
        return others[0], True
    return hint, False


def declarations(settings_class: type) -> dict[str, Declared]:
    """The declared settings of a settings dataclass, by name."""
    hints = get_type_hints(settings_class)
    declared = {}
    for item in fields(settings_class):
        factory = None if item.default_factory is MISSING else item.default_factory
        found = Declared(
            item.name, hints[item.name], item.metadata[_METADATA_KEY], item.default, factory
        )
        declared[found.name] = found
    return declared


# A retired setting, by name (`THRESHOLDS`), with where its value goes now.
Retired = Mapping[str, str]


def _refuse_unknown(name: str, known: Iterable[str], retired: Retired) -> None:
    if (instead := retired.get(name.removeprefix(ENV_PREFIX))) is not None:
        raise ConfigError(f"{name} is no longer a setting: {instead}")
    closest = difflib.get_close_matches(name.upper(), list(known), n=1)
    hint = f"; did you mean {closest[0]}?" if closest else " (docs/configuration.md)"
    raise ConfigError(f"{name} is not a setting of this service{hint}")


def refuse_unknown_names(
    names: Iterable[Any], declared: Mapping[str, Declared], retired: Retired
) -> None:
    """Refuse the first name (sorted) that is not a setting, saying where a retired one went
    or naming the closest setting."""
    for name in sorted(names, key=str):
        if name not in declared:
            _refuse_unknown(str(name), declared, retired)


def environment_values(
    environ: Mapping[str, str], declared: Mapping[str, Declared], retired: Retired
) -> dict[str, Any]:
    """The settings the environment sets, by name. A CDS_* or GUNICORN_* variable that is
    no setting (a misspelt one would be silently ignored) is refused like an unknown name."""
    by_variable = {d.variable: d.name for d in declared.values()}
    values = {}
    for variable in sorted(environ):
        if variable in by_variable:
            values[by_variable[variable]] = _parse_env_value(environ[variable])
        elif variable.startswith(_PREFIXES) and variable not in GUNICORN_OWN_VARIABLES:
            _refuse_unknown(variable, by_variable, retired)
    return values


def _parse_env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_table(groups: Iterable[type]) -> str:
    """The markdown tables of every setting, one per group of settings (a dataclass whose
    docstring is the title): docs/configuration.md holds them, a test compares."""
    parts = []
    for group in groups:
        lines = [
            f"### {(group.__doc__ or group.__name__).strip()}",
            "",
            "| Setting | Environment variable | Type | Default | What it does |",
            "| --- | --- | --- | --- | --- |",
        ]
        for item in declarations(group).values():
            cells = [f"`{item.name}`", f"`{item.variable}`", item.expected(), item.shown_default()]
            lines.append("| " + " | ".join(_cell(c) for c in [*cells, item.declaration.doc]) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)
