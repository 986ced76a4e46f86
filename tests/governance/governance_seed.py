"""A seeded governance history with every number worked out by hand: live and silent cards
across two knowledge versions and two weeks, calls with their scope, feedback with reasons.
The report test, the console test and the browser test all read it."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Flask

from cds_service.governance import Storage
from cds_service.governance.burden import Period

from .conftest import SERVICE_ID, Clock, feedback_item, make_card, storage_of

URL = f"/cds-services/{SERVICE_ID}/feedback"
MONITOR, STALE, PROFOUND = "LEUKOPENIA_MONITOR", "CBC_STALE", "LYMPHOPENIA_PROFOUND"
PERIOD = Period(date(2025, 3, 3), date(2025, 3, 16), SERVICE_ID)

# What the seed gives (hand-counted):
# calls 15 (W10: 10, of which 8 in scope; W11: 5, all in scope), so 13 in scope;
# LEUKOPENIA_MONITOR live 5 (patients 1, 2, 3): 33.3 per 100 calls, 38.5 per 100 in scope;
#   accepted 2 (one after an earlier override), overridden 3 (already addressed 2, benefit
#   outweighs risk 1), snoozes 2;
# CBC_STALE live 2 (patients 1, 4): 13.3 and 15.4; 1 overridden without a coded reason;
# LYMPHOPENIA_PROFOUND silent 4 (patients 1, 2): 26.7 and 30.8;
# knowledge version k1 in W10, k2 from W11.


def seed_governance(app: Flask, clock: Clock) -> None:
    storage: Storage = storage_of(app)
    client = app.test_client()

    def call(
        patient: int,
        live: tuple[str, ...] = (),
        silent: tuple[str, ...] = (),
        in_scope: bool = True,
        version: str = "k1",
    ) -> list[str]:
        cards = [make_card(rule) for rule in live]
        all_live = (*live, *silent) if silent else None
        storage.record_cards(
            SERVICE_ID,
            "patient-view",
            f"h-{patient}",
            f"Patient/{patient}",
            cards,
            version,
            silent=[(rule, "warning") for rule in silent],
            all_live=all_live,
            in_scope=in_scope,
        )
        return [card["uuid"] for card in cards]

    def feedback(*items: dict[str, Any]) -> None:
        assert client.post(URL, json={"feedback": list(items)}).status_code == 200

    # Week 2025-W10, knowledge k1.
    first, stale_w10 = call(1, (MONITOR, STALE), (PROFOUND,))
    [second] = call(2, (MONITOR,), (PROFOUND,))
    [third] = call(3, (MONITOR,))
    [fourth] = call(1, (MONITOR,), (PROFOUND,))
    for patient in range(5, 11):
        call(patient, in_scope=patient <= 8)
    storage.flush()
    feedback(
        feedback_item(first, outcome="accepted"),
        feedback_item(second, code="already-addressed"),
        feedback_item(third, code="counts-reviewed"),
        feedback_item(third, outcome="accepted", timestamp="2025-03-04T09:00:00Z"),
        feedback_item(fourth, code="benefit-outweighs-risk"),
        feedback_item(stale_w10, overrideReason={"userComment": "seen"}),
    )
    # Week 2025-W11, knowledge k2.
    clock.advance(days=7)
    [monitor_w11] = call(1, (MONITOR,), (PROFOUND,), version="k2")
    call(4, (STALE,), version="k2")
    for patient in (2, 3, 5):
        call(patient, version="k2")
    storage.flush()
    feedback(feedback_item(monitor_w11, code="already-addressed", timestamp="2025-03-10T09:00:00Z"))
