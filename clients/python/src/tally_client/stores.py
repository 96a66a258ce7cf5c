"""Where a subscriber remembers what it has processed: exactly-once effects from an
at-least-once stream.

The subscriber opens a transaction, claims the event's id (`claim` answers False when the id
was processed before: a redelivery, which is skipped), runs the handler with the same
transaction, and commits: the effect and the memory of the event commit together, or neither
does. A store also holds a lock, so one process per subscriber name handles events at a time
(the others wait as standbys and take over when it dies).

- `PostgresStore(dsn)`: the handler gets a `psycopg.Connection` in a transaction (needs
  psycopg: `pip install 'tally-client[postgres]'`); the lock is an advisory lock.
- `SQLiteStore(path)`: the handler gets a `sqlite3.Connection` in a transaction; the lock is a
  file lock beside the database.
- `MemoryStore()`: no transaction (the handler gets None) and nothing survives a restart:
  at-least-once, for effects that are idempotent by themselves and for tests.

Rows stay until `prune` removes those older than the stream keeps events (30 days by default):
a replay from an older position would otherwise find nothing to dedupe against.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from tally_client.events import Event

TABLE = "tally_processed_events"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


def checked_table(table: str) -> str:
    if not _IDENTIFIER.match(table):
        raise ValueError(f"not a plain SQL table name: {table!r}")
    return table


class Store(Protocol):
    """Port: a subscriber's own record of processed events, and its single-runner lock."""

    def setup(self, subscriber: str) -> None: ...

    def try_lock(self, subscriber: str) -> bool: ...

    def still_locked(self) -> bool: ...

    def unlock(self) -> None: ...

    def begin(self) -> Any: ...

    def claim(self, tx: Any, subscriber: str, event: Event) -> bool: ...

    def commit(self, tx: Any) -> None: ...

    def rollback(self, tx: Any) -> None: ...

    def last_position(self, subscriber: str) -> int: ...

    def close(self) -> None: ...


class MemoryStore:
    """Processed ids in memory (at-least-once across restarts); the handler's tx is None."""

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = {}
        self._positions: dict[str, int] = {}
        self._pending: list[tuple[str, Event]] = []

    def setup(self, subscriber: str) -> None:
        self._seen.setdefault(subscriber, set())

    def try_lock(self, subscriber: str) -> bool:
        return True

    def still_locked(self) -> bool:
        return True

    def unlock(self) -> None:
        pass

    def begin(self) -> Any:
        self._pending = []
        return None

    def claim(self, tx: Any, subscriber: str, event: Event) -> bool:
        if str(event.id) in self._seen.setdefault(subscriber, set()):
            return False
        self._pending.append((subscriber, event))
        return True

    def commit(self, tx: Any) -> None:
        for subscriber, event in self._pending:
            self._seen[subscriber].add(str(event.id))
            self._positions[subscriber] = max(self._positions.get(subscriber, 0), event.position)
        self._pending = []

    def rollback(self, tx: Any) -> None:
        self._pending = []

    def last_position(self, subscriber: str) -> int:
        return self._positions.get(subscriber, 0)

    def close(self) -> None:
        pass


class SQLiteStore:
    """Processed events in a table of the subscriber's SQLite database (see module doc)."""

    def __init__(self, path: str | os.PathLike[str], *, table: str = TABLE) -> None:
        self.path, self.table = Path(path), checked_table(table)
        self._conn: sqlite3.Connection | None = None
        self._lock_file: Any = None

    @property
    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
        return self._conn

    def setup(self, subscriber: str) -> None:
        self.connection.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (subscriber TEXT NOT NULL, "
            "event_id TEXT NOT NULL, position INTEGER NOT NULL, event_type TEXT NOT NULL, "
            "processed_at TEXT NOT NULL, PRIMARY KEY (subscriber, event_id))"
        )
        self.connection.execute(
            f"CREATE INDEX IF NOT EXISTS {self.table}_position ON {self.table} "
            "(subscriber, position)"
        )

    def try_lock(self, subscriber: str) -> bool:
        import fcntl

        name = hashlib.sha256(subscriber.encode()).hexdigest()[:16]
        handle = open(f"{self.path}.{name}.lock", "a+")  # noqa: SIM115 (held while running)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def still_locked(self) -> bool:
        return self._lock_file is not None

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the flock
            self._lock_file = None

    def begin(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def claim(self, tx: sqlite3.Connection, subscriber: str, event: Event) -> bool:
        cursor = tx.execute(
            f"INSERT INTO {self.table} VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (subscriber, str(event.id), event.position, event.type, _now()),
        )
        return cursor.rowcount == 1

    def commit(self, tx: sqlite3.Connection) -> None:
        tx.execute("COMMIT")

    def rollback(self, tx: sqlite3.Connection) -> None:
        if tx.in_transaction:
            tx.execute("ROLLBACK")

    def last_position(self, subscriber: str) -> int:
        row = self.connection.execute(
            f"SELECT MAX(position) FROM {self.table} WHERE subscriber = ?", (subscriber,)
        ).fetchone()
        return int(row[0] or 0)

    def prune(self, subscriber: str, older_than: timedelta = timedelta(days=30)) -> int:
        cutoff = (datetime.now(UTC) - older_than).isoformat()
        cursor = self.connection.execute(
            f"DELETE FROM {self.table} WHERE subscriber = ? AND processed_at < ?",
            (subscriber, cutoff),
        )
        return cursor.rowcount

    def close(self) -> None:
        self.unlock()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresStore:
    """Processed events in a table of the subscriber's PostgreSQL database (see module doc)."""

    def __init__(self, dsn: str, *, table: str = TABLE, connect_timeout: int = 5) -> None:
        self.dsn, self.table, self.connect_timeout = dsn, checked_table(table), connect_timeout
        self._conn: Any = None
        self._lock_conn: Any = None
        self._guard = threading.Lock()

    def _connect(self, *, autocommit: bool) -> Any:
        import psycopg

        return psycopg.connect(
            self.dsn, autocommit=autocommit, connect_timeout=self.connect_timeout
        )

    @property
    def connection(self) -> Any:
        """The connection effects run on (made again after it broke)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect(autocommit=False)
        return self._conn

    def setup(self, subscriber: str) -> None:
        with self._connect(autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (subscriber TEXT NOT NULL, "
                "event_id UUID NOT NULL, position BIGINT NOT NULL, event_type TEXT NOT NULL, "
                "processed_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
                "PRIMARY KEY (subscriber, event_id))"
            )
            index = f"{self.table.replace('.', '_')}_position"
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {index} ON {self.table} (subscriber, position)"
            )

    def try_lock(self, subscriber: str) -> bool:
        with self._guard:
            if self._lock_conn is None or self._lock_conn.closed:
                self._lock_conn = self._connect(autocommit=True)
            row = self._lock_conn.execute(
                "SELECT pg_try_advisory_lock(%s)", (lock_key(self.table, subscriber),)
            ).fetchone()
            return bool(row[0])

    def still_locked(self) -> bool:
        """The lock's connection still answers (the lock dies with it)."""
        with self._guard:
            if self._lock_conn is None or self._lock_conn.closed:
                return False
            try:
                self._lock_conn.execute("SELECT 1")
            except Exception:
                return False
            return True

    def unlock(self) -> None:
        with self._guard:
            if self._lock_conn is not None:
                with contextlib.suppress(Exception):
                    self._lock_conn.close()
                self._lock_conn = None

    def begin(self) -> Any:
        return self.connection  # psycopg opens the transaction at the first statement

    def claim(self, tx: Any, subscriber: str, event: Event) -> bool:
        cursor = tx.execute(
            f"INSERT INTO {self.table} (subscriber, event_id, position, event_type) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (subscriber, event.id, event.position, event.type),
        )
        return bool(cursor.rowcount == 1)

    def commit(self, tx: Any) -> None:
        tx.commit()

    def rollback(self, tx: Any) -> None:
        with contextlib.suppress(Exception):
            tx.rollback()

    def last_position(self, subscriber: str) -> int:
        with self._connect(autocommit=True) as conn:
            row = conn.execute(
                f"SELECT MAX(position) FROM {self.table} WHERE subscriber = %s", (subscriber,)
            ).fetchone()
        return int(row[0] or 0)

    def prune(self, subscriber: str, older_than: timedelta = timedelta(days=30)) -> int:
        with self._connect(autocommit=True) as conn:
            cursor = conn.execute(
                f"DELETE FROM {self.table} WHERE subscriber = %s AND processed_at < %s",
                (subscriber, datetime.now(UTC) - older_than),
            )
        return int(cursor.rowcount)

    def close(self) -> None:
        self.unlock()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def lock_key(table: str, subscriber: str) -> int:
    """A signed 64-bit advisory lock key for one subscriber name."""
    digest = hashlib.blake2b(f"{table}:{subscriber}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _now() -> str:
    return datetime.now(UTC).isoformat()
