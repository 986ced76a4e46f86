"""Prefetch templates rendered against a hook's context, as the service would query them itself.

Only the CDS Hooks 2.0 tokens are filled: `{{context.<field>}}` for a root-level primitive
context field, and the four user tokens derived from `context.userId`. Substituted values are
URL-encoded; in the path they must be a FHIR id (or `Type/id` for a whole-reference token), so a
context value can never steer the request to another path.

Before that, when the service definitions are loaded, `{{knowledge.<list>}}` is replaced by a
code list of the clinical knowledge (`fill_code_lists`): the codes asked for are written once,
in the knowledge files, and discovery shows the filled template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

TOKEN = re.compile(r"\{\{\s*(.*?)\s*\}\}")
CODE_LIST_NAME = re.compile(r"\{\{\s*knowledge\.([A-Za-z0-9_]+)\s*\}\}")
CODE_LIST_RUN = re.compile(rf"{CODE_LIST_NAME.pattern}(?:,{CODE_LIST_NAME.pattern})*")
CONTEXT_TOKEN = re.compile(r"context\.([A-Za-z0-9_-]+)")
USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"
PATH_VALUE = re.compile(rf"(?:[A-Z][A-Za-z]+/)?{FHIR_ID}")
RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]+")


@dataclass(frozen=True)
class PrefetchQuery:
    """One prefetch template as the service would run it against the FHIR server."""

    # The resource type the template asks for; None when a token decides it and cannot be filled.
    resource_type: str | None
    # The URL relative to fhirServer, or None when a token cannot be filled.
    relative_url: str | None
    # The token that could not be filled (the template is then not fetched).
    unfilled_token: str | None = None


def fill_code_lists(template: str, code_lists: Mapping[str, Sequence[tuple[str, str]]]) -> str:
    """`template` with each `{{knowledge.<list>}}` replaced by the list's codes as a token
    search value (`system|code,system|code`). Tokens joined by commas make one list, so an
    empty list leaves no empty value; unknown lists, or lists all empty, stay unfilled."""

    def codes(match: re.Match[str]) -> str:
        names = CODE_LIST_NAME.findall(match.group(0))
        if not all(name in code_lists for name in names):
            return match.group(0)
        found = [f"{system}|{code}" for name in names for system, code in code_lists[name]]
        return ",".join(found) or match.group(0)

    return CODE_LIST_RUN.sub(codes, template)


def _token_value(token: str, context: Mapping[str, Any]) -> str | None:
    if match := CONTEXT_TOKEN.fullmatch(token):
        value = context.get(match.group(1))
        # Only primitive fields can be tokens; bool is excluded because it is not an id.
        if isinstance(value, bool) or not isinstance(value, str | int):
            return None
        return str(value) or None
    if token in USER_TOKENS:
        user_type, _, user_id = str(context.get("userId") or "").partition("/")
        return user_id if user_type == USER_TOKENS[token] and user_id else None
    return None


def _encoded(value: str, in_query: bool) -> str | None:
    if in_query:
        return quote(value, safe="")
    # "." and ".." are valid id characters but would walk the path.
    if not PATH_VALUE.fullmatch(value) or not all(part.strip(".") for part in value.split("/")):
        return None
    return "/".join(quote(part, safe="") for part in value.split("/"))


def _leading_type(path: str) -> str | None:
    first = path.split("/", 1)[0]
    return first if RESOURCE_TYPE.fullmatch(first) else None


def plan_query(template: str, context: Mapping[str, Any]) -> PrefetchQuery:
    """The template with its tokens filled from `context`, ready to append to fhirServer."""
    query_start = template.find("?")
    parts: list[str] = []
    position = 0
    for match in TOKEN.finditer(template):
        value = _token_value(match.group(1), context)
        in_query = 0 <= query_start < match.start()
        encoded = None if value is None else _encoded(value, in_query)
        if encoded is None:
            literal_type = _leading_type(template.split("?", 1)[0])
            return PrefetchQuery(literal_type, None, "{{" + match.group(1) + "}}")
        parts += [template[position : match.start()], encoded]
        position = match.end()
    rendered = "".join(parts) + template[position:]
    return PrefetchQuery(_leading_type(rendered.split("?", 1)[0]), rendered)
