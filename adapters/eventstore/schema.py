"""The event store's DDL: what the eventsourcing library's recorders would create (events,
snapshots, their composite type, index and insert function) plus the usage keys tables of
KeyedPostgresRecorder / KeyedSQLiteRecorder, as statements for migration 1 (ADR 0017).

On PostgreSQL the ledger is opened with the library's table creation off and these
statements run once, under the migration lock; on SQLite the library still creates its
tables itself and the statements (all IF NOT EXISTS) run again harmlessly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.postgres import PostgresRecorder
from psycopg.sql import SQL, Composable

Statement = str | Composable


def event_store_statements(recorders: Sequence[Any]) -> list[Statement]:
    """Every recorder's create statements: composite types first (the rest use them)."""
    postgres = [r for r in recorders if isinstance(r, PostgresRecorder)]
    if not postgres:
        return [s for r in recorders for s in r.create_table_statements]
    statements = [s for r in postgres for s in r.sql_create_statements]
    types = {s.as_string(): s for s in statements if _is_type(s)}  # snapshots share one
    return [*map(_unless_present, types.values()), *(s for s in statements if not _is_type(s))]


def _is_type(statement: Composable) -> bool:
    return "CREATE TYPE" in statement.as_string()


def _unless_present(statement: Composable) -> Composable:
    """CREATE TYPE has no IF NOT EXISTS: a database made before migrations has the type."""
    return SQL("DO $$ BEGIN {}; EXCEPTION WHEN duplicate_object THEN NULL; END $$").format(
        statement
    )
