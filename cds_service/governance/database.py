"""Engines and schema migrations for SQLite (default) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
# Any constant works: it only has to be the same for every process migrating one database.
_MIGRATION_LOCK_ID = 7_203_114


def create_database_engine(database_url: str, timeout_seconds: float = 5) -> Engine:
    """An engine that fails within `timeout_seconds` when the database is away, so a hook
    call is never held up for long by card history or snooze look-ups."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": timeout_seconds})
        event.listen(engine, "connect", _enable_sqlite_wal)
        return engine
    # Keep any `options` in the URL (e.g. a search_path) and add a statement timeout.
    options = url.query.get("options", "")
    if not isinstance(options, str):
        options = " ".join(options)
    timeout_ms = max(1, int(timeout_seconds * 1000))
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_timeout=timeout_seconds,
        connect_args={
            "connect_timeout": max(1, round(timeout_seconds)),
            "options": f"{options} -c statement_timeout={timeout_ms}".strip(),
        },
    )


def _enable_sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the hook path read snoozes while the history writer is writing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a feedback item answered with 200 survives a power cut too (NORMAL could drop the
    # last commits). Measured under 16-client load it cost ~2% throughput, within run-to-run
    # noise: the history writer commits in batches.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def insert_ignoring_duplicates(
    connection: Connection,
    model: type[DeclarativeBase],
    rows: Iterable[Mapping[str, Any]],
    returning: str | None = None,
) -> set[Any]:
    """INSERT into `model`'s table that skips rows hitting a unique constraint: duplicates
    are not errors. With `returning`, the values of that column of the rows inserted."""
    rows = list(rows)
    if not rows:
        return set()
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[connection.dialect.name]
    # The Table itself: SQLAlchemy types `model.__table__` as any FromClause.
    table = model.metadata.tables[model.__tablename__]
    statement = dialect.insert(table).on_conflict_do_nothing()
    if returning is None:
        connection.execute(statement, rows)
        return set()
    return set(connection.scalars(statement.returning(table.c[returning]), rows))


def add_to_counts(
    connection: Connection,
    model: type[DeclarativeBase],
    rows: Sequence[Mapping[str, Any]],
    counts: tuple[str, ...],
) -> None:
    """Add each row's `counts` to the row of the same key, or insert it: an atomic upsert on
    both databases, so workers adding to the same day's counts at once lose nothing."""
    if not rows:
        return
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[connection.dialect.name]
    table = model.metadata.tables[model.__tablename__]
    statement = dialect.insert(table)
    keys = [column.name for column in table.primary_key.columns]
    statement = statement.on_conflict_do_update(
        index_elements=keys,
        set_={name: table.c[name] + statement.excluded[name] for name in counts},
    )
    connection.execute(statement, list(rows))


def migrate(database_url: str, timeout_seconds: float = 5) -> None:
    """Bring the schema to the newest revision; safe to run at every start-up."""
    engine = create_database_engine(database_url, timeout_seconds)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Several workers starting at once must not run the same migration twice.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
                )
            upgrade_connection(connection)
    finally:
        engine.dispose()


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", "cds_service.governance:migrations")
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
