"""The card check (clinical contract v4, issue 23): every fixture response read as a clinician
reads it, so scenarios added later are held to it too. It fails on

- a unit code such as `{pill}` in any text or in a resource a suggestion would write;
- `<=` or `>=` in text (v4: the symbols < > and the words "at most"/"at least");
- a bullet that is also numbered ("- 1. Drug toxicity first");
- "patient is Duffy-null" offered to override a card Duffy-null status cannot explain
  (critical, combination, lymphopenia or moderate/severe neutropenia cards, or a quoted ANC
  below 1.0 or WBC below the Duffy-null reference 3.00);
- two CBC-order actions (or two hematology referrals) in one answer, counting the alternatives
  of one `at-most-one` card as one action;
- a monitoring schedule naming a drug the card is not about.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.scenarios import SCENARIOS

from .test_card_limits import responses

UNIT_CODE = re.compile(r"\{[A-Za-z#]+\}")
NUMBERED_BULLET = re.compile(r"^\s*[-*•]\s+\d+[.)]\s", re.MULTILINE)
CBC_CODES = {"57021-8", "58410-2"}
REFERRAL_CODE = "3457005"
# The rules whose trigger Duffy-null status never explains.
NO_DUFFY_RULES = {
    "FEBRILE_NEUTROPENIA",
    "NEUTROPENIA_SEVERE",
    "NEUTROPENIA_MODERATE",
    "REFRACTORY_LEUKOPENIA_REFERRAL",
    "LYMPHOPENIA_PROFOUND",
    "LYMPHOPENIA_INFO",
}
COMBINATION = re.compile(r"allopurinol|febuxostat|trimethoprim|TMP-SMX|co-trimoxazole", re.I)
TIER_A = ("azathioprine", "mercaptopurine", "mycophenolate", "methotrexate", "leflunomide")
SCHEDULE = re.compile(
    r"weekly in month|twice monthly|every (month|\d+ weeks?|2-4 weeks|6-8 weeks)|monthly for",
    re.I,
)
NAMES = [s["name"] for s in SCENARIOS]


def _strings(value: Any) -> Iterator[str]:
    """Every string value of a JSON value (never its braces)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _texts(card: dict[str, Any]) -> list[str]:
    """What a clinician reads: summary, detail, suggestion labels, action descriptions and
    override reasons."""
    texts = [card["summary"], card["detail"]]
    for suggestion in card.get("suggestions", []):
        texts.append(suggestion["label"])
        texts += [action["description"] for action in suggestion["actions"]]
    texts += [reason["display"] for reason in card.get("overrideReasons", [])]
    return texts


def _cards(name: str) -> list[dict[str, Any]]:
    return responses()[name]["cards"]


def _rule(card: dict[str, Any]) -> str:
    return card["source"]["topic"]["code"]


@pytest.mark.parametrize("name", NAMES)
def test_no_unit_code_in_text_or_resources(name: str) -> None:
    for card in _cards(name):
        found = [t for t in _texts(card) if UNIT_CODE.search(t)]
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                found += [t for t in _strings(action.get("resource", {})) if UNIT_CODE.search(t)]
        assert found == [], (_rule(card), found)


@pytest.mark.parametrize("name", NAMES)
def test_no_less_or_greater_equal_signs(name: str) -> None:
    for card in _cards(name):
        found = [t for t in _texts(card) if "<=" in t or ">=" in t]
        assert found == [], (_rule(card), found)


@pytest.mark.parametrize("name", NAMES)
def test_no_numbered_bullets(name: str) -> None:
    for card in _cards(name):
        assert not NUMBERED_BULLET.search(card["detail"]), (_rule(card), card["detail"])


def _duffy_cannot_explain(card: dict[str, Any]) -> str:
    """Why "patient is Duffy-null" does not fit this card, or ""."""
    summary = card["summary"]
    if card["indicator"] == "critical":
        return "critical card"
    if _rule(card) in NO_DUFFY_RULES:
        return f"{_rule(card)} card"
    if "ALC" in summary:
        return "lymphopenia trigger"
    if COMBINATION.search(summary):
        return "combination card"
    anc = re.search(r"ANC (?:at most |<)?(\d+\.\d+)", summary)
    if anc and float(anc.group(1)) < 1.0:
        return f"ANC {anc.group(1)}"
    wbc = re.search(r"WBC (?:at most |<)?(\d+\.\d+)", summary)
    if wbc and float(wbc.group(1)) < 3.0:
        return f"WBC {wbc.group(1)}"
    return ""


@pytest.mark.parametrize("name", NAMES)
def test_duffy_null_override_only_where_it_can_explain_the_card(name: str) -> None:
    for card in _cards(name):
        codes = {reason["code"] for reason in card.get("overrideReasons", [])}
        if "duffy-null" in codes:
            assert _duffy_cannot_explain(card) == "", (_rule(card), card["summary"])


def _order_actions(card: dict[str, Any], code: str) -> int:
    """How many separate actions of the card create a ServiceRequest with this code; the
    alternatives of an `at-most-one` card count once."""
    count = 0
    for suggestion in card.get("suggestions", []):
        for action in suggestion["actions"]:
            resource = action.get("resource", {})
            if resource.get("resourceType") == "ServiceRequest" and code in set(
                _strings(resource.get("code", {}))
            ):
                count += 1
    if card.get("selectionBehavior") == "at-most-one":
        return min(count, 1)
    return count


@pytest.mark.parametrize("name", NAMES)
def test_one_cbc_order_and_one_referral_per_answer(name: str) -> None:
    cards = _cards(name)
    cbc = sum(max(_order_actions(card, code) for code in CBC_CODES) for card in cards)
    referral = sum(_order_actions(card, REFERRAL_CODE) for card in cards)
    assert cbc <= 1, [(_rule(c), c["summary"]) for c in cards]
    assert referral <= 1, [(_rule(c), c["summary"]) for c in cards]


@pytest.mark.parametrize("name", NAMES)
def test_a_monitoring_schedule_names_only_the_cards_own_drugs(name: str) -> None:
    for card in _cards(name):
        evidence, _, recommendation = card["detail"].partition("**Recommendation**")
        about = (card["summary"] + evidence).lower()
        for sentence in re.split(r"(?<=[.;])\s", recommendation):
            if not SCHEDULE.search(sentence):
                continue
            named = [drug for drug in TIER_A if drug in sentence.lower()]
            assert all(drug in about for drug in named), (_rule(card), sentence)


def test_the_check_sees_what_it_forbids() -> None:
    """The checks fail on the v3 texts the review found (so a passing run means something)."""
    assert UNIT_CODE.search("Reduce azathioprine to 0.5 {pill} per dose")
    assert NUMBERED_BULLET.search("- 1. Drug toxicity first: hold or reduce ...")
    critical = {"indicator": "critical", "summary": "ANC 0.30", "source": {"topic": {"code": "X"}}}
    assert _duffy_cannot_explain(critical) == "critical card"
    moderate = {"indicator": "warning", "summary": "Review azathioprine: ANC 0.80 < 1.5"}
    moderate["source"] = {"topic": {"code": "DRUG_CYTOPENIA_DOSE_REVIEW"}}
    assert _duffy_cannot_explain(moderate) == "ANC 0.80"
    two = {
        "selectionBehavior": "any",
        "suggestions": [
            {
                "label": "Order CBC",
                "actions": [
                    {
                        "type": "create",
                        "description": "CBC",
                        "resource": {
                            "resourceType": "ServiceRequest",
                            "code": {"coding": [{"code": "57021-8"}]},
                        },
                    }
                ],
            }
        ]
        * 2,
    }
    assert _order_actions(two, "57021-8") == 2
    sentence = "Then monitor at the label's interval (azathioprine: weekly in month 1)."
    assert SCHEDULE.search(sentence) and "azathioprine" in sentence
