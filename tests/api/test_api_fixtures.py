"""Every fixture scenario through the HTTP API: the cards match the clinical rules (rule ids,
indicators, precedence) and every response obeys the CDS Hooks JSON rules."""

from __future__ import annotations

import pytest

from tests.support.conformance import check_response
from tests.support.scenarios import SCENARIOS, request_of, service_for


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_fixture_gives_the_expected_cards(scenario, client):
    response = client.post(
        f"/cds-services/{service_for(scenario['hook'])}", json=request_of(scenario)
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    check_response(body)
    got = {(c["source"]["topic"]["code"], c["indicator"]) for c in body["cards"]}
    expected = {(e["rule"], e["indicator"]) for e in scenario["expected"]}
    assert expected <= got
    assert not {rule for rule, _ in got} & set(scenario["absent"])
    hcq_stop = [c for c in body["cards"] if "stop hydroxychloroquine" in c["detail"].lower()]
    assert hcq_stop == []
