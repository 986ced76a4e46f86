"""CDS Hooks 2.0 response checks (CONFORMANCE.md §A, §F and Inferno's card checks), applied
to every response the tests see."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

_RESOURCE_ID = re.compile(r"^[A-Za-z]+/[A-Za-z0-9\-.]{1,256}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def empty_values(value: Any, path: str = "$") -> list[str]:
    """Paths holding null, "", [] or {} (the spec forbids them, except `cards: []`)."""
    if value is None or value == "" or value == [] or value == {}:
        return [path]
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if path == "$" and key == "cards" and item == []:
                continue
            found += empty_values(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += empty_values(item, f"{path}[{index}]")
    return found


def _is_url(value: Any) -> bool:
    parts = urlsplit(value) if isinstance(value, str) else None
    return bool(parts and parts.scheme in ("http", "https") and parts.netloc)


def _check_action(action: dict[str, Any]) -> None:
    assert action["type"] in ("create", "update", "delete")
    assert isinstance(action["description"], str) and action["description"]
    if action["type"] in ("create", "update"):
        assert isinstance(action["resource"], dict) and action["resource"]["resourceType"]
    else:
        assert _RESOURCE_ID.match(action["resourceId"]) and "resource" not in action


def check_card(card: dict[str, Any]) -> None:
    assert _UUID.match(card["uuid"])
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert isinstance(card["detail"], str) and card["detail"]
    source = card["source"]
    assert isinstance(source["label"], str) and source["label"]
    assert _is_url(source["url"])
    assert source["topic"]["system"] and source["topic"]["code"]
    if "suggestions" in card:
        assert card["selectionBehavior"] in ("at-most-one", "any")
        recommended = [s for s in card["suggestions"] if s.get("isRecommended")]
        if card["selectionBehavior"] == "at-most-one":
            assert len(recommended) <= 1
        for suggestion in card["suggestions"]:
            assert isinstance(suggestion["label"], str) and suggestion["label"]
            assert suggestion["actions"]
            for action in suggestion["actions"]:
                _check_action(action)
    for reason in card.get("overrideReasons", []):
        assert reason["code"] and reason["system"] and reason["display"]
    for link in card.get("links", []):
        assert link["label"] and _is_url(link["url"]) and link["type"] in ("absolute", "smart")
        assert not (link["type"] == "absolute" and "appContext" in link)


def check_response(body: dict[str, Any]) -> None:
    assert isinstance(body["cards"], list)
    assert empty_values(body) == [], empty_values(body)
    uuids = [card["uuid"] for card in body["cards"]]
    assert len(uuids) == len(set(uuids))
    for card in body["cards"]:
        check_card(card)
    for action in body.get("systemActions", []):
        _check_action(action)
