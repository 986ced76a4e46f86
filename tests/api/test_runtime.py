"""One composition root: create_app builds the Runtime once, and the views serve from it."""

from __future__ import annotations

import dataclasses

import pytest

from cds_service import create_app
from cds_service.runtime import Runtime, runtime


@pytest.fixture
def app(tmp_path):
    app = create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp_path}/cds.sqlite3"})
    yield app
    runtime(app).storage.close()


def test_the_app_holds_one_runtime_and_no_other_object_of_the_service(app):
    assert isinstance(runtime(app), Runtime)
    assert [key for key in app.extensions if key.startswith("cds")] == ["cds_runtime"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        runtime(app).settings = None  # type: ignore[misc]


def test_the_views_serve_the_runtime_they_were_given(app):
    held = runtime(app)
    with app.test_request_context():
        assert runtime() is held  # the accessor of a request reads the same object
    offered = [s["id"] for s in app.test_client().get("/cds-services").json["services"]]
    assert offered == list(held.services)
