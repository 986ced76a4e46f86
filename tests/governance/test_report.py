"""Per rule and ISO week numbers, checked against a history seeded by hand."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Any

from flask import Flask

from cds_service.governance import Storage
from cds_service.governance.report import (
    NO_REASON,
    ReasonCount,
    RuleWeekStats,
    feedback_report,
    render_csv,
    render_text,
    report_main,
)

from .conftest import SERVICE_ID, Clock, feedback_item, make_card, storage_of

URL = f"/cds-services/{SERVICE_ID}/feedback"


def seed_history(app: Flask, clock: Clock) -> None:
    """Week 2025-W10: 5 LEUKOPENIA_MONITOR cards: 2 accepted (one after an earlier override),
    2 overridden (already addressed; comment only), 1 ignored.
    Week 2025-W11: 2 LEUKOPENIA_MONITOR overridden as counts reviewed, 1 CBC_STALE ignored."""
    storage: Storage = storage_of(app)
    client = app.test_client()

    def show(rule_id: str, count: int) -> list[str]:
        cards = [make_card(rule_id) for _ in range(count)]
        storage.record_cards(SERVICE_ID, "patient-view", "h", "Patient/1", cards, "v")
        return [card["uuid"] for card in cards]

    def feedback(*items: dict[str, Any]) -> None:
        assert client.post(URL, json={"feedback": list(items)}).status_code == 200

    week10 = show("LEUKOPENIA_MONITOR", 5)
    storage.flush()
    comment_only = feedback_item(week10[2], overrideReason={"userComment": "seen"})
    feedback(
        feedback_item(week10[0], outcome="accepted"),
        feedback_item(week10[1], code="already-addressed"),
        feedback_item(week10[1], code="already-addressed"),  # re-sent: counted once
        comment_only,
        feedback_item(week10[4], code="already-addressed"),
        feedback_item(week10[4], outcome="accepted", timestamp="2025-03-04T09:00:00Z"),
        feedback_item("never-issued", code="already-addressed"),
    )
    clock.advance(days=7)
    week11 = show("LEUKOPENIA_MONITOR", 2)
    show("CBC_STALE", 1)
    storage.flush()
    reviewed = feedback_item(week11[0], code="counts-reviewed", timestamp="2025-03-10T10:00:00Z")
    del reviewed["overrideReason"]["reason"]["display"]  # display is optional in feedback
    feedback(
        reviewed, feedback_item(week11[1], code="counts-reviewed", timestamp="2025-03-10T10:00:00Z")
    )


EXPECTED = [
    RuleWeekStats("CBC_STALE", "2025-W11", shown=1, accepted=0, overridden=0, override_reasons=()),
    RuleWeekStats(
        "LEUKOPENIA_MONITOR",
        "2025-W10",
        shown=5,
        accepted=2,
        overridden=2,
        override_reasons=(
            ReasonCount(NO_REASON, NO_REASON, 1),
            ReasonCount("already-addressed", "Already addressed", 1),
        ),
    ),
    RuleWeekStats(
        "LEUKOPENIA_MONITOR",
        "2025-W11",
        shown=2,
        accepted=0,
        overridden=2,
        override_reasons=(ReasonCount("counts-reviewed", "Counts already reviewed", 2),),
    ),
]


def test_report_counts_each_card_once_with_its_latest_outcome(
    app: Flask, storage: Storage, clock: Clock
) -> None:
    seed_history(app, clock)
    stats = feedback_report(storage)
    assert stats == EXPECTED
    assert [s.acceptance_rate for s in stats] == [0.0, 0.4, 0.0]


def test_since_limits_the_report_to_cards_shown_from_that_day(
    app: Flask, storage: Storage, clock: Clock
) -> None:
    seed_history(app, clock)
    assert feedback_report(storage, since=date(2025, 3, 10)) == [EXPECTED[0], EXPECTED[2]]
    assert feedback_report(storage, since=date(2025, 3, 17)) == []


def test_renderings(app: Flask, storage: Storage, clock: Clock) -> None:
    seed_history(app, clock)
    stats = feedback_report(storage)
    text = render_text(stats).splitlines()
    assert text[0].split() == [
        "rule",
        "week",
        "shown",
        "accepted",
        "overridden",
        "acceptance",
        "override",
        "reasons",
    ]
    assert text[2].split()[:6] == ["LEUKOPENIA_MONITOR", "2025-W10", "5", "2", "2", "40%"]
    assert "Already addressed: 1" in text[2]
    rows = list(csv.DictReader(io.StringIO(render_csv(stats))))
    assert rows[1] == {
        "rule_id": "LEUKOPENIA_MONITOR",
        "week": "2025-W10",
        "shown": "5",
        "accepted": "2",
        "overridden": "2",
        "acceptance_rate": "0.4000",
        "override_reasons": f"{NO_REASON}=1; already-addressed=1",
    }


def test_report_main_reads_the_database_named_by_url(
    app: Flask, storage: Storage, clock: Clock, database_url: str
) -> None:
    seed_history(app, clock)
    data = json.loads(report_main(database_url, "json", date(2025, 3, 10)))
    assert [(d["rule_id"], d["week"], d["overridden"], d["acceptance_rate"]) for d in data] == [
        ("CBC_STALE", "2025-W11", 0, 0.0),
        ("LEUKOPENIA_MONITOR", "2025-W11", 2, 0.0),
    ]
    assert data[1]["override_reasons"] == [
        {"code": "counts-reviewed", "display": "Counts already reviewed", "count": 2}
    ]


def test_report_of_an_empty_database(tmp_path: Any) -> None:
    assert report_main(f"sqlite:///{tmp_path}/new.sqlite3", "text") == "No cards in the period.\n"


# --- Governance data cannot be relabelled by a client (issue 13 §3) ------------------------


def test_reason_displays_come_from_the_catalogue_not_from_feedback(
    app: Flask, storage: Storage, clock: Clock
) -> None:
    cards = [make_card("LEUKOPENIA_MONITOR") for _ in range(2)]
    storage.record_cards(SERVICE_ID, "patient-view", "h", "Patient/1", cards, "v")
    storage.flush()
    honest = feedback_item(cards[0]["uuid"], code="already-addressed")
    forged = feedback_item(
        cards[1]["uuid"], code="already-addressed", timestamp="2099-01-01T00:00:00Z"
    )
    forged["overrideReason"]["reason"]["display"] = "Alert is useless, turn it off"
    client = app.test_client()
    assert client.post(URL, json={"feedback": [honest, forged]}).status_code == 200
    [stats] = feedback_report(storage)
    assert stats.override_reasons == (ReasonCount("already-addressed", "Already addressed", 2),)


def test_a_code_of_another_system_does_not_pass_for_ours(
    app: Flask, storage: Storage, clock: Clock
) -> None:
    card = make_card("LEUKOPENIA_MONITOR")
    storage.record_cards(SERVICE_ID, "patient-view", "h", "Patient/1", [card], "v")
    storage.flush()
    item = feedback_item(card["uuid"], code="already-addressed")
    item["overrideReason"]["reason"]["system"] = "https://elsewhere.example.net/reasons"
    assert app.test_client().post(URL, json={"feedback": [item]}).status_code == 200
    [stats] = feedback_report(storage)
    [reason] = stats.override_reasons
    assert reason.display == "https://elsewhere.example.net/reasons|already-addressed"


def test_the_latest_outcome_is_the_last_received_whatever_its_timestamp(
    app: Flask, storage: Storage, clock: Clock
) -> None:
    card = make_card("LEUKOPENIA_MONITOR")
    storage.record_cards(SERVICE_ID, "patient-view", "h", "Patient/1", [card], "v")
    storage.flush()
    client = app.test_client()
    future = feedback_item(card["uuid"], outcome="accepted", timestamp="2099-01-01T00:00:00Z")
    assert client.post(URL, json={"feedback": [future]}).status_code == 200
    clock.advance(minutes=5)
    overridden = feedback_item(card["uuid"], code="counts-reviewed")
    assert client.post(URL, json={"feedback": [overridden]}).status_code == 200
    [stats] = feedback_report(storage)
    assert (stats.accepted, stats.overridden) == (0, 1)
