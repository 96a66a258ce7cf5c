"""Projector port: turns events into view rows through a transaction the adapter provides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

from projections.envelope import EventEnvelope

Row = dict[str, Any]


class ViewTx(Protocol):
    """One read-model transaction: the projector's rows and its tracking position commit
    together. Table names are logical; the adapter maps them (and to shadow tables on replay)."""

    def upsert(self, table: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None: ...

    def increment(self, table: str, key: Mapping[str, Any], deltas: Mapping[str, int]) -> None: ...

    def get(self, table: str, key: Mapping[str, Any]) -> Row | None: ...

    def select(self, table: str, where: Mapping[str, Any]) -> list[Row]: ...

    def delete(self, table: str, key: Mapping[str, Any]) -> None: ...

    def prefetch(self, table: str, keys: Sequence[Mapping[str, Any]]) -> None:
        """Read these rows (all with the same key columns) in one go, so the `get`s that
        follow answer from memory; an optimization only, never required."""


class Projector:
    """Builds one read model from events; never loads aggregates (events carry enough).

    TABLES maps logical table name -> (column DDL list, primary key columns). Column types
    are portable between PostgreSQL and SQLite: TEXT, BIGINT, BOOLEAN. Times are ISO-8601 UTC
    text, which sorts chronologically.
    """

    NAME: ClassVar[str] = ""
    TABLES: ClassVar[dict[str, tuple[Sequence[str], Sequence[str]]]] = {}
    HANDLES: ClassVar[frozenset[str]] = frozenset()

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        """Change view rows for one event (only called for types in HANDLES)."""
        raise NotImplementedError

    def prefetch(self, events: Sequence[EventEnvelope], tx: ViewTx) -> None:
        """Before a batch is applied: read the rows its events will `get`, in one query per
        table (optional; the default reads nothing ahead)."""

    def after_commit(self, events: Sequence[EventEnvelope]) -> None:
        """Side effects after the rows are durable (e.g. refresh a Redis hot copy)."""

    def after_rebuild(self) -> None:
        """Side effects after a replay swapped in a rebuilt model (e.g. drop a hot cache)."""
