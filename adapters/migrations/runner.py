"""Apply the migrations a database has not applied yet, once, and record them (ADR 0017).

On PostgreSQL each store (the event store's database and schema, then the read models')
is migrated on one connection of its own holding the schema's advisory lock (`lock.py`)
for the whole run: a process that starts meanwhile waits for the lock, then finds every
version recorded in `tally_migrations` and applies nothing. Each migration commits in one
transaction with its row in `tally_migrations`, so a failed one leaves no trace and is
tried again by the next start. SQLite (one process) runs the same list in its own
transactions and records the versions too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from eventsourcing.postgres import PostgresRecorder
from psycopg.sql import SQL, Identifier

from adapters.eventstore.schema import Statement
from adapters.migrations.lock import lock_key
from adapters.migrations.versions import MIGRATIONS, Migration, Store, Stores
from adapters.readmodels.sql_store import ViewStore

VERSIONS = "tally_migrations"
_COLUMNS = (
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "applied_at {ts} NOT NULL DEFAULT CURRENT_TIMESTAMP)"
)
_CONNECTION_KEYS = ("dbname", "host", "port", "user", "password", "connect_timeout")


@dataclass
class MigrationRun:
    """What a run did: the migrations it applied, and every version recorded after it."""

    applied: list[Migration] = field(default_factory=list)
    recorded: set[int] = field(default_factory=set)


class Session(Protocol):
    """A store's migration session, holding its lock: what is recorded, and applying one."""

    def recorded(self) -> set[int]: ...

    def apply(self, migration: Migration, statements: Sequence[Statement]) -> bool: ...


Target = Callable[[], contextlib.AbstractContextManager[Session]]


def migrate(
    ledger: Any, views: ViewStore, migrations: Sequence[Migration] = MIGRATIONS
) -> MigrationRun:
    """Apply, in version order, every migration the stores have not recorded yet."""
    stores = Stores(recorders=recorders_of(ledger), views=views)
    ordered = sorted(migrations, key=lambda m: m.version)
    run = MigrationRun()
    for store, target in targets(stores).items():
        with target() as session:
            recorded = session.recorded()
            for migration in (m for m in ordered if m.store == store):
                if migration.version in recorded:
                    continue
                if session.apply(migration, migration.statements(stores)):
                    run.applied.append(migration)
            run.recorded |= session.recorded()
    if isinstance(stores.events, PostgresRecorder):  # the composite types exist now
        stores.events.datastore.register_type_adapters()
    return run


def recorders_of(ledger: Any) -> list[Any]:
    """The ledger's recorders: its events', then its snapshots' (when it snapshots)."""
    snapshots = ledger.snapshots.recorder if ledger.snapshots is not None else None
    return [ledger.recorder, *([snapshots] if snapshots is not None else [])]


def targets(stores: Stores) -> dict[Store, Target]:
    """Where each store's migrations run (and are recorded)."""
    events, views = stores.events, stores.views
    if isinstance(events, PostgresRecorder):
        pool = events.datastore.pool
        assert isinstance(pool.kwargs, dict) and isinstance(pool.conninfo, str)  # the library's
        kwargs = {k: v for k, v in pool.kwargs.items() if k in _CONNECTION_KEYS}
        event_target: Target = PostgresTarget(pool.conninfo, kwargs, events.datastore.schema)
    else:
        event_target = SqliteTarget(lambda: events.datastore.transaction(commit=True))
    if views.dialect == "postgres":
        kwargs = {"connect_timeout": views.timeouts.connect}
        return {"events": event_target, "views": PostgresTarget(views.target, kwargs, views.schema)}
    return {"events": event_target, "views": SqliteTarget(views.cursor)}


class PostgresTarget:
    """A store on PostgreSQL: one connection, holding the schema's advisory lock."""

    def __init__(self, conninfo: str, kwargs: dict[str, Any], schema: str) -> None:
        self.conninfo, self.kwargs, self.schema = conninfo, kwargs, schema

    @contextlib.contextmanager
    def __call__(self) -> Iterator[Session]:
        with psycopg.connect(self.conninfo, autocommit=True, **self.kwargs) as conn:
            conn.execute("SET statement_timeout = 0")  # a migration may take long
            conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(self.schema),))
            try:
                yield PostgresSession(conn, self.schema)
            finally:
                with contextlib.suppress(psycopg.Error):  # closing releases it too
                    conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(self.schema),))


class PostgresSession:
    """Migrations of one schema, under its lock (held by the caller)."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str) -> None:
        self.conn = conn
        self.table = Identifier(schema, VERSIONS)
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if found.fetchone() is None:
            conn.execute(SQL("CREATE SCHEMA {}").format(Identifier(schema)))
        create = SQL("CREATE TABLE IF NOT EXISTS {} " + _COLUMNS.format(ts="timestamptz"))
        conn.execute(create.format(self.table))

    def recorded(self) -> set[int]:
        rows = self.conn.execute(SQL("SELECT version FROM {}").format(self.table)).fetchall()
        return {int(row[0]) for row in rows}

    def apply(self, migration: Migration, statements: Sequence[Statement]) -> bool:
        insert = SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(self.table)
        with self.conn.transaction():
            for statement in statements:
                self.conn.execute(statement)  # type: ignore[arg-type]  # DDL, no parameters
            self.conn.execute(insert, (migration.version, migration.name))
        return True


class SqliteTarget:
    """A store on SQLite (one process): each step in a write transaction of the store's."""

    def __init__(self, transaction: Callable[[], contextlib.AbstractContextManager[Any]]):
        self.transaction = transaction

    @contextlib.contextmanager
    def __call__(self) -> Iterator[Session]:
        with self.transaction() as cursor:
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {VERSIONS} " + _COLUMNS.format(ts="TEXT"))
        yield SqliteSession(self.transaction)


class SqliteSession:
    def __init__(self, transaction: Callable[[], contextlib.AbstractContextManager[Any]]):
        self.transaction = transaction

    def recorded(self) -> set[int]:
        with self.transaction() as cursor:
            return _versions(cursor)

    def apply(self, migration: Migration, statements: Sequence[Statement]) -> bool:
        """False when the version was recorded meanwhile (another thread applied it)."""
        with self.transaction() as cursor:
            if migration.version in _versions(cursor):
                return False
            for statement in statements:
                cursor.execute(statement)
            insert = f"INSERT INTO {VERSIONS} (version, name) VALUES (?, ?)"
            cursor.execute(insert, (migration.version, migration.name))
        return True


def _versions(cursor: Any) -> set[int]:
    cursor.execute(f"SELECT version FROM {VERSIONS}")
    return {int(row[0]) for row in cursor.fetchall()}
