"""Cards read in seconds (issue 11): limits measured over the responses to every fixture
scenario (patient-view and order hooks), so scenarios added later are held to them too.

- at most 3 cards per response;
- a summary under 140 characters that is never cut mid-word (rules shorten their wording);
- median detail <= 700 characters, none over 1,100; at most 5 recommendation lines;
- each reference shown once: the primary in `source`, the others as `links`, none repeated in
  the text (no "Sources:" paragraph);
- the rule id and knowledge version machine-readable only (`source.topic`, `extension`);
- the value as received only when its unit differs (no raw UCUM such as "10*3/uL" or "Cel");
- no internal resource ids in the text;
- doses as prescribed: mg/day is internal and never shown (clinical rules §2.5 display).
"""

from __future__ import annotations

import re
import statistics
import tempfile
from functools import cache
from typing import Any

import pytest

from cds_service import create_app
from cds_service.cards import KNOWLEDGE_VERSION_EXTENSION
from cds_service.rules.catalogue import BY_ID
from cds_service.runtime import runtime
from tests.support.scenarios import SCENARIOS, request_of, service_for

MAX_CARDS = 3
MAX_SUMMARY = 139
MAX_DETAIL = 1100
MEDIAN_DETAIL = 700
MAX_RECOMMENDATIONS = 5
RAW_UCUM = re.compile(r"10\*\d|\bCel\b|\[degF\]|\[lb_av\]|\{[a-z#]+\}/")
RESOURCE_ID = re.compile(
    r"\b(MedicationRequest|MedicationStatement|MedicationAdministration|Observation|Condition"
    r"|Patient|ServiceRequest|Medication)/[A-Za-z0-9\-.]+"
)
PER_DAY = re.compile(r"\bmg/day\b")  # mg/kg/day and mcg/kg/day do not match
RECEIVED = re.compile(r"([\d.]+) x10\^9/L \(received ([\d.]+) ")


@cache
def responses() -> dict[str, dict[str, Any]]:
    """One response per scenario, from one app (the limits are about content, not state)."""
    app = create_app(
        {"ENV": "testing", "DATABASE_URL": f"sqlite:///{tempfile.mkdtemp()}/cds.sqlite3"}
    )
    client = app.test_client()
    answers = {}
    for scenario in SCENARIOS:
        service = service_for(scenario["hook"])
        response = client.post(f"/cds-services/{service}", json=request_of(scenario))
        assert response.status_code == 200, (scenario["name"], response.get_json())
        answers[scenario["name"]] = response.get_json()
    runtime(app).storage.close()
    return answers


def all_cards() -> list[tuple[str, dict[str, Any]]]:
    return [(name, card) for name, body in responses().items() for card in body["cards"]]


def recommendation_lines(detail: str) -> list[str]:
    section = detail.split("**Recommendation**", 1)[1] if "**Recommendation**" in detail else ""
    return [line for line in section.splitlines() if line.startswith("- ")]


@pytest.mark.parametrize("name", [s["name"] for s in SCENARIOS])
def test_at_most_three_cards_per_response(name: str) -> None:
    assert len(responses()[name]["cards"]) <= MAX_CARDS


def test_detail_length_median_and_maximum() -> None:
    lengths = {
        f"{name}:{card['source']['topic']['code']}": len(card["detail"])
        for name, card in all_cards()
    }
    assert lengths, "the fixtures produce cards"
    too_long = {key: n for key, n in lengths.items() if n > MAX_DETAIL}
    assert too_long == {}
    assert statistics.median(lengths.values()) <= MEDIAN_DETAIL


@pytest.mark.parametrize("name", [s["name"] for s in SCENARIOS])
def test_each_card_reads_in_seconds(name: str) -> None:
    for card in responses()[name]["cards"]:
        summary, detail = card["summary"], card["detail"]
        rule = card["source"]["topic"]["code"]
        assert len(summary) <= MAX_SUMMARY, summary
        assert not summary.endswith("..."), f"summary cut: {summary}"
        assert len(recommendation_lines(detail)) <= MAX_RECOMMENDATIONS, (rule, detail)
        text = f"{summary}\n{detail}"
        # Each reference once: primary in source, the rest as links, not in the text.
        assert "Sources:" not in detail
        assert card["source"]["label"] not in detail, rule
        urls = [link["url"] for link in card.get("links", [])]
        assert len(urls) == len(set(urls)) and card["source"]["url"] not in urls, rule
        # Rule ids and the knowledge version: machine-readable only.
        assert not [r for r in BY_ID if r in text], text
        version = card["extension"][KNOWLEDGE_VERSION_EXTENSION]
        assert version not in text and "knowledge version" not in text.lower()
        # Readable units; the value as received only when its unit changed the number.
        assert not RAW_UCUM.search(text), (rule, RAW_UCUM.search(text))
        assert not PER_DAY.search(text), (rule, text)
        for shown, received in RECEIVED.findall(text):
            assert float(shown) != pytest.approx(float(received)), (rule, shown, received)
        assert not RESOURCE_ID.search(text), (rule, RESOURCE_ID.search(text))


def test_the_limits_see_every_kind_of_card() -> None:
    """The check is only as good as the cards it sees: the fixtures exercise most rules."""
    seen = {card["source"]["topic"]["code"] for _, card in all_cards()}
    assert len(seen) >= 12, sorted(seen)
