"""The Stripe webhook inbox: every verified event once, in `stripe_webhooks` beside the events.

The table lives in the event store's database (SQLite or PostgreSQL), written through the
recorder's own connections, as the usage keys are. `event_id` is the primary key, so a
redelivered event finds its row instead of a second one. Status: `pending` (stored, not yet
processed), `processed`, `unrouted` (names no Tally app: kept and listed, never processed)
or `failed` (retried from `next_attempt_at`). A claim moves `next_attempt_at` forward (a
lease), so two processes never work on one row at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from adapters.migrations.lock import XACT_LOCK, lock_key

TABLE = "stripe_webhooks"
STATUSES = ("pending", "processed", "unrouted", "failed")

_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS {{table}} (
    event_id TEXT PRIMARY KEY,
    app_id TEXT,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at {ts} NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'processed', 'unrouted', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    last_error TEXT,
    processed_at {ts},
    next_attempt_at {ts}
)"""
_CREATE_INDEX = f"CREATE INDEX IF NOT EXISTS {TABLE}_due ON {{table}} (status, next_attempt_at)"
_LISTED = (
    "event_id, app_id, type, status, attempts, outcome, last_error, "
    "received_at, processed_at, next_attempt_at"
)
_DUE = (
    "(status = 'pending' AND received_at <= ? OR status = 'failed') "
    "AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
)
_TIMES = ("received_at", "processed_at", "next_attempt_at")


@dataclass(frozen=True)
class Claimed:
    """A row taken for processing: its event, and how often it was tried before."""

    event_id: str
    app_id: str
    event: dict[str, Any]
    attempts: int


class StripeInbox:
    """Port adapter: the `stripe_webhooks` table on the event store's database."""

    def __init__(self, recorder: Any) -> None:
        if isinstance(recorder, PostgresApplicationRecorder):
            self._db: _Postgres | _Sqlite = _Postgres(recorder.datastore)
        else:
            self._db = _Sqlite(recorder.datastore)

    def statements(self) -> list[Any]:
        """The table's and its index's DDL (migration 3 runs it)."""
        return self._db.statements()

    def ensure_table(self) -> None:
        """Create the table and its index if missing (safe when several processes start)."""
        self._db.create()

    def insert(self, event: dict[str, Any], app_id: str | None, payload: str, at: datetime) -> bool:
        """Store a new event (`unrouted` without an app); False when its id is already in."""
        status = "pending" if app_id else "unrouted"
        _, inserted = self._db.run(
            "INSERT INTO {table} (event_id, app_id, type, payload, received_at, status) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
            (event["id"], app_id, event["type"], payload, self._db.stamp(at), status),
        )
        return inserted == 1

    def claim(
        self, now: datetime, pending_before: datetime, lease_until: datetime, limit: int
    ) -> list[Claimed]:
        """Take up to `limit` due rows (failed and due, or pending since `pending_before`),
        leasing each until `lease_until`; rows another process holds are skipped."""
        stamp = self._db.stamp
        with self._db.claiming():
            rows, _ = self._db.run(
                "UPDATE {table} SET next_attempt_at = ? WHERE event_id IN "
                f"(SELECT event_id FROM {{table}} WHERE {_DUE} ORDER BY received_at LIMIT ?"
                f"{self._db.skip_locked}) RETURNING event_id, app_id, payload, attempts",
                (stamp(lease_until), stamp(pending_before), stamp(now), limit),
            )
        return [
            Claimed(row["event_id"], row["app_id"], orjson.loads(row["payload"]), row["attempts"])
            for row in rows
        ]

    def mark_processed(self, event_id: str, attempts: int, outcome: str, at: datetime) -> None:
        self._db.run(
            "UPDATE {table} SET status = 'processed', attempts = ?, outcome = ?, "
            "last_error = NULL, processed_at = ?, next_attempt_at = NULL WHERE event_id = ?",
            (attempts, outcome, self._db.stamp(at), event_id),
        )

    def mark_failed(self, event_id: str, attempts: int, error: str, retry_at: datetime) -> None:
        """Record a failed attempt (never over a row another attempt processed meanwhile)."""
        self._db.run(
            "UPDATE {table} SET status = 'failed', attempts = ?, last_error = ?, "
            "next_attempt_at = ? WHERE event_id = ? AND status <> 'processed'",
            (attempts, error, self._db.stamp(retry_at), event_id),
        )

    def rows(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest rows first (optionally of one status), without their payloads."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        where = "WHERE status = ? " if status else ""
        params: tuple[Any, ...] = (status, limit) if status else (limit,)
        found, _ = self._db.run(
            f"SELECT {_LISTED} FROM {{table}} {where}ORDER BY received_at DESC, event_id LIMIT ?",
            params,
            commit=False,
        )
        return [self._listed(row) for row in found]

    def row(self, event_id: str) -> dict[str, Any] | None:
        """One row with its payload (the event as Stripe sent it), or None."""
        found, _ = self._db.run(
            f"SELECT {_LISTED}, payload FROM {{table}} WHERE event_id = ?",
            (event_id,),
            commit=False,
        )
        if not found:
            return None
        listed = self._listed(found[0])
        listed["payload"] = orjson.loads(found[0]["payload"])
        return listed

    def _listed(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, **{name: self._db.instant(row[name]) for name in _TIMES}}


class _Postgres:
    """Statements on PostgreSQL: the table in the store's schema, `%s` parameters."""

    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, datastore: Any) -> None:
        self.datastore = datastore
        self.table = Identifier(datastore.schema, TABLE)
        self.lock_key = lock_key(datastore.schema)

    def statements(self) -> list[Any]:
        return [self._sql(_CREATE_TABLE.format(ts="timestamptz")), self._sql(_CREATE_INDEX)]

    def create(self) -> None:
        # CREATE TABLE IF NOT EXISTS alone can collide in the catalog when two processes
        # start together; the migration lock makes them take turns (migration 3 made it).
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(XACT_LOCK, (self.lock_key,))
            for statement in self.statements():
                curs.execute(statement)

    def run(
        self, statement: str, params: Sequence[Any], *, commit: bool = True
    ) -> tuple[list[dict[str, Any]], int]:
        with self.datastore.transaction(commit=commit) as curs:
            curs.execute(self._sql(statement.replace("?", "%s")), params)
            rows = curs.fetchall() if curs.description else []
            return [dict(row) for row in rows], curs.rowcount

    def claiming(self) -> AbstractContextManager[Any]:
        return nullcontext()  # SKIP LOCKED in the statement does it, across processes

    def stamp(self, at: datetime) -> datetime:
        return at.astimezone(UTC)

    def instant(self, value: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def _sql(self, statement: str) -> Any:
        return SQL(statement).format(table=self.table)


class _Sqlite:
    """Statements on SQLite: one process, so a lock serializes claims; times as UTC text."""

    skip_locked = ""

    def __init__(self, datastore: Any) -> None:
        self.datastore = datastore
        self.lock = threading.Lock()

    def statements(self) -> list[Any]:
        return [
            _CREATE_TABLE.format(ts="TEXT").format(table=TABLE),
            _CREATE_INDEX.format(table=TABLE),
        ]

    def create(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            for statement in self.statements():
                c.execute(statement)

    def run(
        self, statement: str, params: Sequence[Any], *, commit: bool = True
    ) -> tuple[list[dict[str, Any]], int]:
        with self.datastore.transaction(commit=commit) as c:
            c.execute(statement.format(table=TABLE), params)
            rows = [dict(row) for row in c.fetchall()]
            return rows, c.sqlite_cursor.rowcount

    def claiming(self) -> threading.Lock:
        return self.lock

    def stamp(self, at: datetime) -> str:
        """UTC ISO text to the microsecond, so text order is time order."""
        return at.astimezone(UTC).isoformat(timespec="microseconds")

    def instant(self, value: Any) -> datetime | None:
        return datetime.fromisoformat(value) if value is not None else None
