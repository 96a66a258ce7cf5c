"""Usage idempotency keys: a table beside the events, written in the same transaction.

An accepted usage event's key goes into `usage_keys` (primary key app_id + idempotency_key)
in the transaction that saves the events counting it, so the database, not aggregate state,
enforces "counted once": a concurrent batch that counted the same key first makes this
transaction fail with IntegrityError, and the ingest decides again (the key is then a
duplicate). A key is kept at least KEY_RETENTION (35 days); `prune_keys` deletes older
ones. A hard-limit refusal records its key in `usage_refusals`, so a retried refused key
records at most one QuotaExceeded.

The recorders are the eventsourcing library's, with these tables and two keyword arguments
of `save()`: `usage_keys` and `usage_refusals`, each a sequence of (app_id, key, recorded_at).
On PostgreSQL a batch's keys travel as ONE JSON array text (orjson), unpacked by the server
(`jsonb_array_elements_text`): psycopg would dump a Python list element by element.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier

KEY_RETENTION = timedelta(days=35)
"""A usage idempotency key is counted once for at least this long."""

KEYS, REFUSALS = "usage_keys", "usage_refusals"
KeyRow = tuple[str, str, datetime]

_COLUMNS = (
    "(app_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, recorded_at {ts} NOT NULL, "
    "PRIMARY KEY (app_id, idempotency_key))"
)


class KeyedPostgresRecorder(PostgresApplicationRecorder):
    """The PostgreSQL recorder, also writing usage keys in the events' transaction."""

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        for table in (KEYS, REFUSALS):
            self.sql_create_statements.append(
                SQL("CREATE TABLE IF NOT EXISTS {}.{} " + _COLUMNS.format(ts="timestamptz")).format(
                    Identifier(datastore.schema), Identifier(table)
                )
            )
            self.sql_create_statements.append(  # pruning by age reads this index
                SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} (recorded_at)").format(
                    Identifier(f"{table}_recorded_at"),
                    Identifier(datastore.schema),
                    Identifier(table),
                )
            )

    def table(self, name: str) -> Any:
        return SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(name))

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[Any], **kwargs: Any) -> None:
        # After the events (so a collision of events stays the first error of the pipeline),
        # on a cursor of its own (the events' cursor still holds their notification ids).
        super()._insert_stored_events(curs, stored_events, **kwargs)
        with curs.connection.cursor() as keys_cursor:
            for table in (KEYS, REFUSALS):
                insert = SQL(
                    "INSERT INTO {} SELECT %s, k, %s FROM jsonb_array_elements_text(%s::jsonb) k"
                ).format(self.table(table))
                for (app_id, at), keys in _grouped(kwargs.get(table) or ()).items():
                    keys_cursor.execute(insert, (app_id, at, _json(keys)))


class KeyedSQLiteRecorder(SQLiteApplicationRecorder):
    """The SQLite recorder, also writing usage keys in the events' transaction."""

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        for table in (KEYS, REFUSALS):
            statements.append(f"CREATE TABLE IF NOT EXISTS {table} " + _COLUMNS.format(ts="TEXT"))
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {table}_recorded_at ON {table} (recorded_at)"
            )
        return statements

    def table(self, name: str) -> str:
        return name

    def _insert_events(self, c: Any, stored_events: Sequence[Any], **kwargs: Any) -> Any:
        for table in (KEYS, REFUSALS):
            rows = kwargs.get(table) or ()
            if rows:
                insert = f"INSERT INTO {table} VALUES (?, ?, ?)"
                c.executemany(insert, [(a, k, _text(at)) for a, k, at in rows])
        return super()._insert_events(c, stored_events, **kwargs)


class UsageKeyStore:
    """Reads (and prunes) the keys the recorder wrote: which keys were counted or refused."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.postgres = isinstance(recorder, PostgresApplicationRecorder)

    def counted(self, app_id: str, keys: Iterable[str]) -> set[str]:
        return self._present(KEYS, app_id, keys)

    def refused(self, app_id: str, keys: Iterable[str]) -> set[str]:
        return self._present(REFUSALS, app_id, keys)

    def _present(self, table: str, app_id: str, keys: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return set()
        if self.postgres:
            query = SQL(
                "SELECT idempotency_key FROM {} WHERE app_id = %s AND idempotency_key = "
                "ANY(ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)))"  # one array, indexed
            )
            with self.recorder.datastore.transaction(commit=False) as curs:
                curs.execute(query.format(self.recorder.table(table)), (app_id, _json(wanted)))
                return {row["idempotency_key"] for row in curs.fetchall()}
        found: set[str] = set()
        with self.recorder.datastore.transaction(commit=False) as c:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                c.execute(
                    f"SELECT idempotency_key FROM {table} "
                    f"WHERE app_id = ? AND idempotency_key IN ({marks})",
                    [app_id, *chunk],
                )
                found.update(row[0] for row in c.fetchall())
        return found

    def prune(self, before: datetime) -> int:
        """Forget keys recorded before `before` (never less than KEY_RETENTION ago)."""
        removed = 0
        for table in (KEYS, REFUSALS):
            if self.postgres:
                query = SQL("DELETE FROM {} WHERE recorded_at < %s").format(
                    self.recorder.table(table)
                )
                with self.recorder.datastore.transaction(commit=True) as curs:
                    curs.execute(query, (before,))
                    removed += curs.rowcount
            else:
                with self.recorder.datastore.transaction(commit=True) as c:
                    c.execute(f"DELETE FROM {table} WHERE recorded_at < ?", (_text(before),))
                    removed += c.sqlite_cursor.rowcount
        return removed


def _grouped(rows: Iterable[KeyRow]) -> dict[tuple[str, datetime], list[str]]:
    """Keys by (app, time): a batch's keys share both, so one array each."""
    groups: dict[tuple[str, datetime], list[str]] = {}
    for app_id, key, at in rows:
        groups.setdefault((app_id, at), []).append(key)
    return groups


def _json(keys: list[str]) -> str:
    """The keys as one JSON array text (the server unpacks it)."""
    return orjson.dumps(keys).decode()


def _text(instant: datetime) -> str:
    """UTC ISO text, so text order is time order in SQLite."""
    return instant.astimezone(UTC).isoformat()
