"""Migrations build the schema from nothing, are safe to re-run, and match the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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
