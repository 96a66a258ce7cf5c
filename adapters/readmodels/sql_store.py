"""Read-model storage on PostgreSQL or SQLite: view rows and tracking in one transaction."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import structlog

from adapters.migrations.lock import XACT_LOCK, lock_key
from adapters.settings import PostgresTimeouts
from projections.base import Projector, Row
from projections.envelope import EventEnvelope

log = structlog.get_logger(__name__)

Dialect = Literal["postgres", "sqlite"]
_IDENT = re.compile(r"^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$")  # optionally schema-qualified
_NAMED = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")


def ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


RowKey = tuple[str, tuple[tuple[str, Any], ...]]
PREFETCH_CHUNK = 300  # keys per prefetch query (parameters stay far below SQLite's limit)


class SqlViewTx:
    """ViewTx over one open connection; logical table names map to physical ones.

    Writes are buffered and coalesced per row (upserts merge, increments add up) and sent
    with executemany at `flush` — a batch of events costs a few round trips, not several
    per event. Reads see the transaction's own writes: a row this transaction read or
    wrote is answered from memory; anything else flushes first. Callers flush before
    committing (ViewStore.apply and replay do).
    """

    def __init__(self, store: ViewStore, conn: Any, suffix: str = "") -> None:
        self.store, self.conn, self.suffix = store, conn, suffix
        self._rows: dict[RowKey, Row | None] = {}  # known current rows (None: absent)
        self._upserts: dict[RowKey, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._increments: dict[RowKey, tuple[dict[str, Any], dict[str, int]]] = {}

    def table(self, logical: str) -> str:
        return self.store.physical(logical, self.suffix)

    @staticmethod
    def _key(table: str, key: Mapping[str, Any]) -> RowKey:
        return table, tuple(sorted(key.items()))

    def upsert(self, table: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        row_key = self._key(table, key)
        if row_key in self._increments:
            self.flush()
        pending = self._upserts.setdefault(row_key, (dict(key), {}))
        pending[1].update(values)
        known = self._rows.get(row_key, ...)
        if isinstance(known, dict):
            self._rows[row_key] = {**known, **values}
        else:  # absent or unread: columns not written here are unknown (defaults or old)
            self._rows.pop(row_key, None)

    def increment(self, table: str, key: Mapping[str, Any], deltas: Mapping[str, int]) -> None:
        row_key = self._key(table, key)
        if row_key in self._upserts:
            self.flush()
        pending = self._increments.setdefault(row_key, (dict(key), {}))
        for column, delta in deltas.items():
            pending[1][column] = pending[1].get(column, 0) + delta
        known = self._rows.get(row_key, ...)
        if isinstance(known, dict):
            self._rows[row_key] = {
                **known,
                **{c: (known.get(c) or 0) + d for c, d in deltas.items()},
            }
        else:
            self._rows.pop(row_key, None)

    def get(self, table: str, key: Mapping[str, Any]) -> Row | None:
        row_key = self._key(table, key)
        if row_key in self._rows:
            known = self._rows[row_key]
            return dict(known) if known is not None else None
        if row_key in self._upserts or row_key in self._increments:
            self.flush()
        rows = self._select(table, key)
        found = rows[0] if rows else None
        self._rows[row_key] = found
        return dict(found) if found is not None else None

    def select(self, table: str, where: Mapping[str, Any]) -> list[Row]:
        self.flush()
        return self._select(table, where)

    def prefetch(self, table: str, keys: Sequence[Mapping[str, Any]]) -> None:
        """Read the rows of these keys not known yet, PREFETCH_CHUNK keys per query; each
        key is then known as its row or as absent."""
        wanted = {self._key(table, key): key for key in keys}
        missing = [key for row_key, key in wanted.items() if row_key not in self._rows]
        if not missing:
            return
        self.flush()
        columns = list(missing[0])
        for start in range(0, len(missing), PREFETCH_CHUNK):
            chunk = missing[start : start + PREFETCH_CHUNK]
            for key in chunk:
                self._rows.setdefault(self._key(table, key), None)
            for row in self._select_keys(table, columns, chunk):
                self._rows[self._key(table, {c: row[c] for c in columns})] = row

    def _select(self, table: str, where: Mapping[str, Any]) -> list[Row]:
        clause = " AND ".join(f"{ident(k)} = :{k}" for k in where) or "1 = 1"
        return self.store.fetch(
            self.conn, f"SELECT * FROM {self.table(table)} WHERE {clause}", dict(where)
        )

    def _select_keys(
        self, table: str, columns: list[str], keys: Sequence[Mapping[str, Any]]
    ) -> list[Row]:
        """The rows of these keys: one query with a row-value IN list."""
        params = {f"k{i}_{j}": key[c] for i, key in enumerate(keys) for j, c in enumerate(columns)}
        tuples = ", ".join(
            "(" + ", ".join(f":k{i}_{j}" for j in range(len(columns))) + ")"
            for i in range(len(keys))
        )
        names = ", ".join(ident(c) for c in columns)
        text = f"SELECT * FROM {self.table(table)} WHERE ({names}) IN ({tuples})"
        return self.store.fetch(self.conn, text, params)

    def delete(self, table: str, key: Mapping[str, Any]) -> None:
        self.flush()
        clause = " AND ".join(f"{ident(k)} = :{k}" for k in key)
        self.store.execute(self.conn, f"DELETE FROM {self.table(table)} WHERE {clause}", dict(key))
        self._rows[self._key(table, key)] = None

    def flush(self) -> None:
        """Send the buffered writes, grouped into one executemany per statement shape."""
        batches: dict[str, list[dict[str, Any]]] = {}
        for (table, _), (key, values) in self._upserts.items():
            shape = ("upsert", table, tuple(key), tuple(values))
            batches.setdefault(self._statement(shape), []).append({**key, **values})
        for (table, _), (key, deltas) in self._increments.items():
            shape = ("increment", table, tuple(key), tuple(deltas))
            batches.setdefault(self._statement(shape), []).append({**key, **deltas})
        self._upserts.clear()
        self._increments.clear()
        for text, params in batches.items():
            self.store.execute_many(self.conn, text, params)

    def _statement(self, shape: tuple[str, str, tuple[str, ...], tuple[str, ...]]) -> str:
        """The SQL of a write of this shape (kind, table, key and value columns), made once
        per shape and kept by the store: a batch of rows of one shape reuses it."""
        known = self.store.statements.get((self.suffix, *shape))
        if known is None:
            kind, table, key, values = shape
            columns = dict.fromkeys(values, 0)
            if kind == "upsert":
                known = self._upsert_sql(table, dict.fromkeys(key), columns)
            else:
                known = self._increment_sql(table, dict.fromkeys(key), columns)
            self.store.statements[(self.suffix, *shape)] = known
        return known

    def _upsert_sql(self, table: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> str:
        cols = [*key, *values]
        keys = ", ".join(ident(k) for k in key)
        sets = ", ".join(f"{ident(c)} = excluded.{ident(c)}" for c in values)
        action = f"DO UPDATE SET {sets}" if values else "DO NOTHING"
        return (
            f"INSERT INTO {self.table(table)} ({', '.join(ident(c) for c in cols)}) "
            f"VALUES ({', '.join(':' + c for c in cols)}) ON CONFLICT ({keys}) {action}"
        )

    def _increment_sql(self, table: str, key: Mapping[str, Any], deltas: Mapping[str, int]) -> str:
        physical = self.table(table)
        cols = [*key, *deltas]
        sets = ", ".join(
            f"{ident(c)} = {physical}.{ident(c)} + excluded.{ident(c)}" for c in deltas
        )
        return (
            f"INSERT INTO {physical} ({', '.join(ident(c) for c in cols)}) "
            f"VALUES ({', '.join(':' + c for c in cols)}) "
            f"ON CONFLICT ({', '.join(ident(k) for k in key)}) DO UPDATE SET {sets}"
        )


class ViewStore:
    """Owns read-model tables and each projection's tracking position."""

    def __init__(
        self,
        dialect: Dialect,
        target: str,
        prefix: str = "rm_",
        timeouts: PostgresTimeouts | None = None,
    ) -> None:
        self.dialect, self.prefix = dialect, prefix
        self._target = target
        self.timeouts = timeouts or PostgresTimeouts()
        self._lock = threading.RLock()
        self.statements: dict[tuple[Any, ...], str] = {}  # SQL text by write shape
        self._sqlite: sqlite3.Connection | None = None
        self._pool: Any = None

    # --- connections ---------------------------------------------------------------

    def _open(self) -> None:
        if self.dialect == "sqlite":
            if self._sqlite is None:
                conn = sqlite3.connect(self._target, check_same_thread=False, timeout=30)
                conn.row_factory = sqlite3.Row
                conn.isolation_level = None  # explicit BEGIN/COMMIT below
                if self._target != ":memory:":
                    conn.execute("PRAGMA journal_mode=WAL")
                self._sqlite = conn
        elif self._pool is None:
            from psycopg.rows import dict_row

            from adapters.pg_pool import IdleCheckedPool

            self._pool = IdleCheckedPool(
                self._target,
                min_size=1,
                max_size=4,
                kwargs={"row_factory": dict_row, **self.timeouts.connection_kwargs()},
                open=True,
                timeout=self.timeouts.pool,  # an outage answers 503 within this
                reconnect_timeout=self.timeouts.reconnect,
                check=IdleCheckedPool.check_if_idle,  # skips connections an outage killed
            )

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        self._open()
        if self.dialect == "sqlite":
            assert self._sqlite is not None
            with self._lock:
                self._sqlite.execute("BEGIN IMMEDIATE")
                try:
                    yield self._sqlite
                except BaseException:
                    self._sqlite.execute("ROLLBACK")
                    raise
                self._sqlite.execute("COMMIT")
        else:
            with self._pool.connection() as conn, conn.transaction():
                yield conn

    @property
    def target(self) -> str:
        """Where the tables are: a PostgreSQL URL or a SQLite path."""
        return self._target

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        """A DB-API cursor in a transaction of its own (execute, then fetchall)."""
        with self.transaction() as conn:
            cursor = conn.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # --- SQL helpers ----------------------------------------------------------------

    def sql(self, text: str) -> str:
        """Write SQL with :name parameters; PostgreSQL gets %(name)s."""
        if self.dialect == "sqlite":
            return text
        return _NAMED.sub(r"%(\1)s", text.replace("%", "%%"))

    def execute(self, conn: Any, text: str, params: Mapping[str, Any] | None = None) -> None:
        conn.execute(self.sql(text), dict(params or {}))

    def execute_many(self, conn: Any, text: str, params: Sequence[Mapping[str, Any]]) -> None:
        if self.dialect == "sqlite":
            conn.executemany(self.sql(text), [dict(p) for p in params])
        else:
            with conn.cursor() as cursor:
                cursor.executemany(self.sql(text), [dict(p) for p in params])

    def fetch(self, conn: Any, text: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        cursor = conn.execute(self.sql(text), dict(params or {}))
        return [dict(row) for row in cursor.fetchall()]

    def query(self, text: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Read-only query for the query functions (logical names via {table} braces)."""
        with self.transaction() as conn:
            return self.fetch(conn, self.expand(text), params)

    def physical(self, logical: str, suffix: str = "") -> str:
        return ident(f"{self.prefix}{logical}{suffix}")

    def expand(self, text: str) -> str:
        """Replace {logical} table names with physical ones."""
        return re.sub(r"\{([a-z_]+)\}", lambda m: self.physical(m.group(1)), text)

    # --- schema and tracking ----------------------------------------------------------

    @property
    def schema(self) -> str:
        """The PostgreSQL schema of the tables (the prefix's, else public)."""
        return self.prefix.split(".")[0] if "." in self.prefix else "public"

    def create_statements(
        self, projector: Projector | type[Projector], suffix: str = ""
    ) -> list[str]:
        """The DDL of the tracking table and the projector's tables (migrations run it)."""
        statements = [
            f"CREATE TABLE IF NOT EXISTS {self.physical('tracking')} "
            "(projection TEXT PRIMARY KEY, position BIGINT NOT NULL)"
        ]
        for logical, (columns, key) in projector.TABLES.items():
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {self.physical(logical, suffix)} "
                f"({', '.join(columns)}, PRIMARY KEY ({', '.join(map(ident, key))}))"
            )
        return statements

    def ensure(self, projector: Projector, suffix: str = "") -> None:
        """Create the tables if missing: on PostgreSQL under the migration lock, so it never
        races a migration or another process (the migrations created them already, except
        replay's shadow tables and a plugin's own)."""
        with self.transaction() as conn:
            if self.dialect == "postgres":
                conn.execute(XACT_LOCK, (lock_key(self.schema),))
            for statement in self.create_statements(projector, suffix):
                self.execute(conn, statement)

    def position(self, name: str, conn: Any = None, *, lock: bool = False) -> int:
        text = f"SELECT position FROM {self.physical('tracking')} WHERE projection = :name"
        if lock and self.dialect == "postgres":
            text += " FOR UPDATE"
        if conn is None:
            rows = self.query(text, {"name": name})
        else:
            rows = self.fetch(conn, text, {"name": name})
        return int(rows[0]["position"]) if rows else 0

    def set_position(self, conn: Any, name: str, position: int) -> None:
        self.execute(
            conn,
            f"INSERT INTO {self.physical('tracking')} (projection, position) VALUES (:n, :p) "
            "ON CONFLICT (projection) DO UPDATE SET position = excluded.position",
            {"n": name, "p": position},
        )

    def apply(self, projector: Projector, events: Sequence[EventEnvelope], through: int = 0) -> int:
        """Apply events (in position order) not yet applied; rows and position commit
        together, so redelivery never double-counts. Returns the new position. `through`:
        the position the batch reaches beyond its last event given (events the caller left
        unread because the projector does not handle them)."""
        applied: list[EventEnvelope] = []
        with self.transaction() as conn:
            position = self.position(projector.NAME, conn, lock=True)
            tx = SqlViewTx(self, conn)
            projector.prefetch([e for e in events if e.position > position], tx)
            for event in events:
                if event.position <= position:
                    continue
                if event.type in projector.HANDLES:
                    projector.apply(event, tx)
                    applied.append(event)
                position = event.position
            position = max(position, through)
            tx.flush()
            self.set_position(conn, projector.NAME, position)
        if applied:
            try:
                projector.after_commit(applied)
            except Exception:  # the rows are the truth; a side effect never blocks progress
                log.exception("after_commit_failed", projection=projector.NAME)
        return position
