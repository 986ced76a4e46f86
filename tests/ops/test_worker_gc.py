"""The garbage-collector settings of a production worker (gunicorn_conf.post_worker_init):
the loaded app frozen out of the collector's view, and no young-generation collection inside
an ordinary hook call."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.ops import gunicorn_conf
from tests.support.synthetic import patient_view_request

SERVICE = "/cds-services/leukopenia-patient-view"


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def _collections_during(client: FlaskClient, body: dict[str, Any]) -> list[int]:
    """The generations collected while the service answers one call."""
    collected: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collected.append(info["generation"])

    gc.collect()  # the young count starts from zero, as after the previous call
    gc.callbacks.append(count)
    try:
        response = client.post(SERVICE, json=body)
    finally:
        gc.callbacks.remove(count)
    assert response.status_code == 200
    return collected


def test_worker_init_freezes_the_app_and_raises_the_young_threshold(restored_gc: None) -> None:
    gc.unfreeze()
    gunicorn_conf.post_worker_init(worker=None)
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] == gunicorn_conf.YOUNG_COLLECTION_THRESHOLD


def test_a_typical_call_runs_no_young_collection_with_the_worker_settings(
    client: FlaskClient, restored_gc: None
) -> None:
    body = patient_view_request("typical")
    client.post(SERVICE, json=body)  # first-call imports and caches, as a worker's warm-up
    gc.set_threshold(700, *gc.get_threshold()[1:])
    assert _collections_during(client, body), "Python's default collects inside the call"
    gunicorn_conf.post_worker_init(worker=None)
    assert _collections_during(client, body) == []
