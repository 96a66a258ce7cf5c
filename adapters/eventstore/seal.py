"""Tamper evidence: the sealer appends each event's seal to its app's hash chain, in a table
beside the events, and `verify` recomputes a chain from the stored events (ADR 0016).

The sealer follows the log in position order, as the relay does, so the write path is
untouched. Each pass seals the events that have no seal yet after `sealed head - overlap`:
an event whose position committed after a higher one (a late commit) is still sealed, as
long as it is at most `overlap` positions below the head. The table's keys make sealing
exactly once even when two sealers race (one of them fails its insert and leaves it):
PRIMARY KEY (app_id, seq) and UNIQUE (position).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from uuid import UUID

import psycopg
import structlog
from eventsourcing.persistence import IntegrityError

from adapters.eventstore.chain import (
    GENESIS,
    UNSEALED,
    Break,
    ChainCheck,
    LoggedEvent,
    Seal,
    Verification,
    seal_of,
)
from adapters.migrations.lock import XACT_LOCK, lock_key

log = structlog.get_logger(__name__)

SEALS = "event_seals"
OVERLAP = 1000  # positions below the sealed head re-read for late commits
CONFLICTS = (IntegrityError, psycopg.IntegrityError, sqlite3.IntegrityError)

_COLUMNS = (
    "app_id TEXT NOT NULL, seq BIGINT NOT NULL, position BIGINT NOT NULL, "
    "event_id TEXT NOT NULL, originator_id TEXT NOT NULL, originator_version BIGINT NOT NULL, "
    "prev_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (app_id, seq)"
)
_SEAL_FIELDS = "app_id, seq, position, event_id, originator_id, originator_version, prev_hash, hash"
_EVENT_FIELDS = "e.{pos} AS position, e.originator_id, e.originator_version, e.topic, e.state"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SealStore:
    """Port adapter: the seals table and the reads of the events table that sealing and
    verification need, on PostgreSQL or SQLite (the recorder's own datastore)."""

    def __init__(self, recorder: Any) -> None:
        self.datastore = recorder.datastore
        self.postgres = hasattr(self.datastore, "schema")
        events = recorder.events_table_name
        if self.postgres:
            schema = _quoted(self.datastore.schema)
            self.names = {"events": f"{schema}.{_quoted(events)}", "seals": f"{schema}.{SEALS}"}
            self.names["pos"] = "notification_id"
        else:
            self.names = {"events": _quoted(events), "seals": SEALS, "pos": "rowid"}
        self._ensured = False

    # --- plumbing -----------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        text = text.format(**self.names)
        return text.replace("?", "%s") if self.postgres else text

    def _rows(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(self._sql(text), list(params))
            return list(cursor.fetchall())

    def _event(self, row: Any) -> LoggedEvent:
        originator = row["originator_id"]
        return LoggedEvent(
            position=int(row["position"]),
            originator_id=originator if isinstance(originator, UUID) else UUID(str(originator)),
            version=int(row["originator_version"]),
            topic=str(row["topic"]),
            state=bytes(row["state"]),
        )

    def _originator(self, originator_id: UUID) -> Any:
        return originator_id if self.postgres else originator_id.hex

    # --- the table ----------------------------------------------------------------------

    def statements(self) -> list[str]:
        """The seals table's DDL (migration 2 runs it)."""
        return [
            self._sql(f"CREATE TABLE IF NOT EXISTS {{seals}} ({_COLUMNS})"),
            self._sql(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {SEALS}_position ON {{seals}} (position)"
            ),
        ]

    def ensure(self) -> None:
        """Create the seals table if missing (migration 2 did, on a migrated store): on
        PostgreSQL under the migration lock, so that processes never race on the catalog."""
        if self._ensured:
            return
        with self.datastore.transaction(commit=True) as cursor:
            if self.postgres:
                cursor.execute(XACT_LOCK, [lock_key(self.datastore.schema)])
            for statement in self.statements():
                cursor.execute(statement)
        self._ensured = True

    def insert(self, seals: Sequence[Seal]) -> None:
        """Append these seals in one transaction (all or none)."""
        rows = [_row(seal) for seal in seals]
        statement = self._sql(f"INSERT INTO {{seals}} ({_SEAL_FIELDS}) VALUES (?,?,?,?,?,?,?,?)")
        with self.datastore.transaction(commit=True) as cursor:
            cursor.executemany(statement, rows)

    # --- reads for the sealer -----------------------------------------------------------

    def sealed_head(self) -> int:
        """The highest sealed position (0 before the first seal)."""
        return int(self._rows("SELECT COALESCE(MAX(position), 0) AS head FROM {seals}")[0]["head"])

    def tail(self, app_id: str) -> tuple[int, str]:
        """(seq, hash) of the app's last entry; (0, GENESIS) for an app not sealed yet."""
        rows = self._rows(
            "SELECT seq, hash FROM {seals} WHERE app_id = ? ORDER BY seq DESC LIMIT 1", [app_id]
        )
        return (int(rows[0]["seq"]), str(rows[0]["hash"])) if rows else (0, GENESIS)

    def unsealed(self, after: int, limit: int, through: int | None = None) -> list[LoggedEvent]:
        """Up to `limit` events without a seal at positions > after (and <= through), in
        position order."""
        bound = " AND e.{pos} <= ?" if through is not None else ""
        rows = self._rows(
            f"SELECT {_EVENT_FIELDS} FROM {{events}} e WHERE e.{{pos}} > ?{bound} "
            "AND NOT EXISTS (SELECT 1 FROM {seals} s WHERE s.position = e.{pos}) "
            "ORDER BY e.{pos} LIMIT ?",
            [after, *([through] if through is not None else []), limit],
        )
        return [self._event(row) for row in rows]

    # --- reads for verification ---------------------------------------------------------

    def apps(self) -> list[str]:
        return [str(r["app_id"]) for r in self._rows("SELECT DISTINCT app_id FROM {seals}")]

    def seals_of(self, app_id: str, after_seq: int, limit: int) -> list[Seal]:
        rows = self._rows(
            f"SELECT {_SEAL_FIELDS} FROM {{seals}} WHERE app_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            [app_id, after_seq, limit],
        )
        return [_seal(row) for row in rows]

    def events_at(self, positions: Sequence[int]) -> dict[int, LoggedEvent]:
        found: dict[int, LoggedEvent] = {}
        for start in range(0, len(positions), 500):
            chunk = list(positions[start : start + 500])
            params: list[Any] = [chunk] if self.postgres else chunk
            where = "e.{pos} = ANY(?)" if self.postgres else f"e.{{pos}} IN ({_marks(chunk)})"
            rows = self._rows(f"SELECT {_EVENT_FIELDS} FROM {{events}} e WHERE {where}", params)
            found.update((event.position, event) for event in map(self._event, rows))
        return found

    def position_of(self, originator_id: UUID, version: int) -> int | None:
        """Where the aggregate's event of that version is now (its primary key), if anywhere."""
        rows = self._rows(
            "SELECT e.{pos} AS position FROM {events} e "
            "WHERE e.originator_id = ? AND e.originator_version = ?",
            [self._originator(originator_id), version],
        )
        return int(rows[0]["position"]) if rows else None

    def iter_unsealed(
        self, after: int, through: int | None = None, batch: int = 1000
    ) -> Iterator[LoggedEvent]:
        """Every event without a seal after a position (up to `through`), in position order."""
        while True:
            events = self.unsealed(after, batch, through)
            yield from events
            if len(events) < batch:
                return
            after = events[-1].position


def _row(s: Seal) -> tuple[Any, ...]:
    """A seal as the table's columns, in _SEAL_FIELDS order."""
    return (
        s.app_id,
        s.seq,
        s.position,
        s.event_id,
        str(s.originator_id),
        s.version,
        s.prev_hash,
        s.hash,
    )


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _seal(row: Any) -> Seal:
    return Seal(
        app_id=str(row["app_id"]),
        seq=int(row["seq"]),
        position=int(row["position"]),
        event_id=str(row["event_id"]),
        originator_id=UUID(str(row["originator_id"])),
        version=int(row["originator_version"]),
        prev_hash=str(row["prev_hash"]),
        hash=str(row["hash"]),
    )


class Sealer:
    """Seals the log in position order: each unsealed event becomes its app's next entry."""

    def __init__(self, store: SealStore, batch: int = 1000, overlap: int = OVERLAP) -> None:
        self.store, self.batch, self.overlap = store, batch, overlap
        self._tails: dict[str, tuple[int, str]] = {}  # app -> (seq, hash) of its last entry
        self._head: int | None = None
        self.sealed = 0  # events sealed by this sealer since it started

    def seal_pending(self) -> int:
        """Seal everything committed now; returns how many events this call sealed. When
        another sealer won a race (a conflicting insert), this one stops here: the other
        sealed those events, and the next call goes on from the table."""
        total = 0
        try:
            while (count := self.seal_batch()) > 0:
                total += count
                if count < self.batch:
                    break
        except CONFLICTS:
            log.info("sealer_lost_a_race", sealed=total)
        return total

    def seal_batch(self) -> int:
        """Seal up to `batch` events in one transaction; returns how many."""
        self.store.ensure()
        head = self.store.sealed_head() if self._head is None else self._head
        events = self.store.unsealed(max(0, head - self.overlap), self.batch)
        if not events:
            return 0
        try:
            self.store.insert(self._chain(events, head))
        except Exception:
            self._tails.clear()  # another sealer may have moved the tails or the head
            self._head = None
            raise
        self._head = max(head, events[-1].position)
        self.sealed += len(events)
        return len(events)

    def _chain(self, events: Iterable[LoggedEvent], head: int) -> list[Seal]:
        seals = []
        for event in events:
            app_id, event_id = event.identity()
            seq, prev_hash = self._tails.get(app_id) or self.store.tail(app_id)
            seal = seal_of(app_id, event_id, seq + 1, prev_hash, event)
            self._tails[app_id] = (seal.seq, seal.hash)
            seals.append(seal)
            if event.position <= head:
                log.info("sealer_sealed_late_commit", position=event.position, head=head)
        return seals


Unsealed = list[tuple[int, str, str]]  # (position, app_id, event_id) of events without a seal


def verify_app(
    store: SealStore, app_id: str, overlap: int = OVERLAP, unsealed: Unsealed | None = None
) -> Verification:
    """Recompute the app's chain from its stored events; the first break, if any.
    `unsealed`: the events without a seal, read before (by `unsealed_now`)."""
    store.ensure()
    sealed_through = store.sealed_head()
    settled = max(0, sealed_through - overlap)  # below it, the sealer has seen every commit
    rows = unsealed_now(store) if unsealed is None else unsealed
    waiting = {position: event_id for position, app, event_id in rows if app == app_id}
    check = ChainCheck()
    broken = _walk(store, app_id, check, waiting)  # drops what it finds sealed meanwhile
    if broken is None:
        broken = _unsealed_break(sorted(p for p in waiting if p <= settled), waiting)
    return Verification(
        app_id=app_id,
        checked=check.checked,
        head_hash=check.head,
        sealed_through=sealed_through,
        not_yet_sealed=sum(1 for position in waiting if position > settled),
        broken=broken,
    )


def verify_all(store: SealStore, overlap: int = OVERLAP) -> list[Verification]:
    """Every app's chain (apps with seals, and any app with an event not sealed yet)."""
    store.ensure()
    unsealed = unsealed_now(store)
    apps = {*store.apps(), *(app_id for _, app_id, _ in unsealed)}
    return [verify_app(store, app_id, overlap, unsealed) for app_id in sorted(apps)]


def unsealed_now(store: SealStore) -> Unsealed:
    """Every event without a seal now, by position, with its app and event id."""
    return [(event.position, *event.identity()) for event in store.iter_unsealed(0)]


def _walk(
    store: SealStore, app_id: str, check: ChainCheck, waiting: dict[int, str]
) -> Break | None:
    """The app's seals in seq order, each checked against the event at its position. An
    event in `waiting` (unsealed when verification began) found sealed is taken out of it."""
    while seals := store.seals_of(app_id, check.next_seq - 1, 1000):
        events = store.events_at([seal.position for seal in seals])
        for seal in seals:
            broken = check.check(seal, events.get(seal.position), store.position_of)
            if broken is not None:
                return broken
            waiting.pop(seal.position, None)
    return None


def _unsealed_break(positions: Sequence[int], event_ids: dict[int, str]) -> Break | None:
    """An event below the settled head without a seal: inserted behind the sealer's back."""
    if not positions:
        return None
    return Break(
        position=positions[0],
        event_id=event_ids[positions[0]] or None,
        reason=UNSEALED,
        detail="an event below the sealed head has no seal (inserted after sealing)",
    )
