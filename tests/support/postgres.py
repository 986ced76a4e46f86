"""The machine's PostgreSQL (127.0.0.1:5432, trust authentication, database `test`): each user
of it gets a schema of its own, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import psycopg

PG_DATABASE = "test"


@cache
def postgres_user() -> str | None:
    """A user the server lets in, or None when no server answers."""
    for user in ("postgres", "root"):
        try:
            psycopg.connect(
                host="127.0.0.1", port=5432, dbname=PG_DATABASE, user=user, connect_timeout=2
            ).close()
            return user
        except psycopg.Error:
            continue
    return None


@contextmanager
def postgres_schema(user: str) -> Iterator[str]:
    """A CDS_DATABASE_URL whose tables live in a new schema of their own."""
    schema = f"t_{uuid.uuid4().hex}"
    dsn = {"host": "127.0.0.1", "port": 5432, "dbname": PG_DATABASE, "user": user}
    with psycopg.connect(**dsn, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            f"postgresql+psycopg://{user}@127.0.0.1:5432/{PG_DATABASE}"
            f"?options=-csearch_path%3D{schema}"
        )
    finally:
        with psycopg.connect(**dsn, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
