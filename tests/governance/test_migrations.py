"""Migrations build the schema from nothing, are safe to re-run, and match the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from cds_service.config import ConfigError
from cds_service.governance import migrate
from cds_service.governance.database import create_database_engine, upgrade_connection
from cds_service.governance.models import Base
from tests.support.settings import production

from .conftest import make_config


def test_migrate_from_empty_builds_a_schema_that_matches_the_models(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)  # every start-up runs it again
    engine = create_database_engine(database_url)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            assert {"alembic_version", "cds_issued_card", "cds_card_feedback"} <= tables
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        engine.dispose()


def test_sqlite_folder_is_created(tmp_path: Path) -> None:
    database = tmp_path / "instance" / "nested" / "cds.sqlite3"
    migrate(f"sqlite:///{database}")
    assert database.exists()


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"DATABASE_URL": "mysql://x"}, "CDS_DATABASE_URL"),
        ({"DATABASE_URL": "sqlite:///:memory:"}, "CDS_DATABASE_URL"),
        ({"DATABASE_TIMEOUT_SECONDS": 0}, "CDS_DATABASE_TIMEOUT_SECONDS"),
        ({"SNOOZE_DAYS": -1}, "CDS_SNOOZE_DAYS"),
        ({"SNOOZE_DAYS": True}, "CDS_SNOOZE_DAYS"),
        ({"CARD_HISTORY_QUEUE_SIZE": "many"}, "CDS_CARD_HISTORY_QUEUE_SIZE"),
        ({"SNOOZE_REASON_CODES": "already-addressed"}, "CDS_SNOOZE_REASON_CODES"),
        ({"SNOOZE_REASON_SYSTEM": ""}, "CDS_SNOOZE_REASON_SYSTEM"),
        ({"ADMIN_USER": ""}, "CDS_ADMIN_USER"),
        ({"ADMIN_PASSWORD": 1234}, "CDS_ADMIN_PASSWORD"),
        (production(ADMIN_PASSWORD="short"), "CDS_ADMIN_PASSWORD"),
    ],
)
def test_bad_storage_settings_are_refused(overrides: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        make_config("sqlite:///x.sqlite3", **overrides)


def test_a_database_of_the_first_release_is_brought_to_the_models(database_url: str) -> None:
    engine = create_database_engine(database_url)
    try:
        with engine.begin() as connection:
            upgrade_connection(connection, "0001")
        migrate(database_url)
        with engine.connect() as connection:
            indexes = inspect(connection).get_indexes("cds_card_feedback")
            assert "ix_cds_card_feedback_snooze" in {index["name"] for index in indexes}
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        engine.dispose()


def test_migration_0003_keeps_the_history_live_and_counts_it_by_day(database_url: str) -> None:
    """Backward compatible: cards recorded before rule modes are live cards, counted in the
    daily counts the console reads; a writer of the previous release (no mode) still works."""
    engine = create_database_engine(database_url)
    insert = text(
        "INSERT INTO cds_issued_card (card_uuid, service_id, hook, hook_instance, rule_id, "
        "knowledge_version, indicator, patient_key, issued_at) VALUES "
        "(:uuid, 's', 'patient-view', 'h', 'CBC_STALE', 'k1', 'warning', 'p', :at)"
    )
    try:
        with engine.begin() as connection:
            upgrade_connection(connection, "0002")
            connection.execute(insert, {"uuid": "a", "at": "2025-03-03 09:00:00"})
            connection.execute(insert, {"uuid": "b", "at": "2025-03-03 23:59:00"})
            for row_id, outcome, at in ((1, "overridden", "10:00"), (2, "accepted", "11:00")):
                connection.execute(
                    text(
                        "INSERT INTO cds_card_feedback (id, service_id, card_uuid, outcome, "
                        "outcome_at, unknown_card, received_at) VALUES "
                        "(:id, 's', 'a', :outcome, :at, false, :at)"
                    ),
                    {"id": row_id, "outcome": outcome, "at": f"2025-03-03 {at}:00"},
                )
        migrate(database_url)
        with engine.begin() as connection:
            connection.execute(insert, {"uuid": "c", "at": "2025-03-04 01:00:00"})
            modes = connection.execute(text("SELECT DISTINCT mode FROM cds_issued_card")).all()
            daily = connection.execute(
                text("SELECT day, rule_id, mode, knowledge_version, cards FROM cds_daily_cards")
            ).all()
            outcomes = connection.execute(
                text("SELECT day, rule_id, indicator, outcome, cards FROM cds_daily_outcomes")
            ).all()
        assert modes == [("live",)]
        # The card's latest feedback only: accepted, after its override.
        assert [(str(day), *rest) for day, *rest in outcomes] == [
            ("2025-03-03", "CBC_STALE", "warning", "accepted", 1)
        ]
        assert [(str(day), *rest) for day, *rest in daily] == [
            ("2025-03-03", "CBC_STALE", "live", "k1", 2)
        ]
    finally:
        engine.dispose()
