"""Persistence: card history, feedback, alert-fatigue snoozes, governance report and dashboard.

The app factory calls `init_app` and keeps the Storage it returns in the app's Runtime; the
hook path then uses its `snoozed_rules` (the answer step's snooze port) and `record_cards` with
the cards it answers with, the silent cards and the call's scope.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable, Collection

from flask import Flask

from cds_service.config import Settings
from cds_service.governance.dashboard import dashboard_blueprint
from cds_service.governance.database import create_database_engine, migrate
from cds_service.governance.feedback_api import feedback_blueprint
from cds_service.governance.models import utc_now
from cds_service.governance.store import Clock, Storage

__all__ = ["Storage", "init_app", "migrate"]

log = logging.getLogger(__name__)


def init_app(
    app: Flask,
    config: Settings,
    service_ids: Callable[[], Collection[str]] | Collection[str],
    clock: Clock = utc_now,
) -> Storage:
    """Migrate the database, start the history writer and register the feedback endpoint and
    the admin dashboard. `service_ids` gives the ids feedback is accepted for."""
    url, timeout = config.database_url, config.database_timeout_seconds
    try:
        migrate(url, timeout)
    except Exception as error:
        # Cards matter more than their history: start anyway, losses are counted.
        log.error(
            "database migration failed (%s); card history and feedback unavailable",
            type(error).__name__,
        )
    snooze_engine = create_database_engine(url, config.snooze_lookup_timeout_seconds)
    storage = Storage(create_database_engine(url, timeout), config, clock, snooze_engine)
    known_ids = service_ids if callable(service_ids) else (lambda: service_ids)
    app.register_blueprint(feedback_blueprint(storage, known_ids))
    app.register_blueprint(dashboard_blueprint(config, storage, known_ids), url_prefix="/admin")
    atexit.register(storage.close)
    return storage
