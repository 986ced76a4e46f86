"""`python -m benchmarks.limits` builds the bodies it promises (no timing is asserted)."""

from __future__ import annotations

import orjson

from benchmarks.limits import dense_request, large_request
from cds_service.protocol import json_body
from cds_service.protocol.request import parse_request


def test_the_large_chart_has_the_size_asked_and_is_accepted():
    raw = large_request(1.0)
    assert 0.9e6 < len(raw) < 1.1e6
    assert parse_request(json_body.loads_request_body(raw), "patient-view").patient_id


def test_the_dense_chart_holds_small_recent_results():
    raw = dense_request(0.2)
    assert 0.18e6 < len(raw) < 0.22e6
    counts = orjson.loads(raw)["prefetch"]["counts"]["entry"]
    assert len(counts) > 600  # ~290 bytes each
    assert {entry["resource"]["code"]["coding"][0]["code"] for entry in counts} == {"6690-2"}
