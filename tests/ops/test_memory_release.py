"""After a call with a large body, free heap memory goes back to the system (malloc_trim)."""

from __future__ import annotations

import orjson
import pytest

from cds_service.ops import memory
from tests.support.scenarios import SCENARIOS, request_of

SERVICE = "/cds-services/leukopenia-patient-view"
FEBRILE = request_of(
    next(s for s in SCENARIOS if s["name"] == "sle-azathioprine-febrile-neutropenia")
)


@pytest.fixture
def trims(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: calls.append)
    return calls


@pytest.mark.parametrize("padding, trimmed", [(0, False), (memory.LARGE_BODY_BYTES, True)])
def test_only_large_calls_are_followed_by_a_trim(client, trims, padding, trimmed):
    body = orjson.dumps(FEBRILE | {"padding": "x" * padding})  # unknown fields are ignored
    response = client.post(SERVICE, data=body, content_type="application/json")
    assert response.status_code == 200
    response.close()  # the WSGI server closes the answer once it is sent
    assert trims == ([0] if trimmed else [])


def test_the_edge_of_a_large_body():
    assert not memory.is_large(memory.LARGE_BODY_BYTES - 1)
    assert memory.is_large(memory.LARGE_BODY_BYTES)
    assert memory.is_large(None)  # chunked: its size is not known in advance


def test_malloc_trim_is_found_on_glibc():
    # The service's image and CI run glibc; elsewhere release() does nothing.
    assert memory._malloc_trim() is not None
    memory.release()
