"""A unit of work: the aggregates one command loads and changes, saved in one transaction."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

from commands.base import EventStore
from domain.base import Aggregate, Cause
from domain.errors import NotFound

A = TypeVar("A", bound=Aggregate[Any])


class UnitOfWork:
    """Tracks aggregates touched by a handler; `commit` appends all their new events at once."""

    def __init__(
        self,
        store: EventStore,
        cause: Cause,
        shared: dict[UUID, Aggregate[Any]] | None = None,
        absent: set[UUID] | None = None,
        batch_rows: dict[str, list[Any]] | None = None,
        batch: dict[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.cause = cause
        self._seen: dict[UUID, Aggregate[Any]] = {}
        self._shared = shared  # a group commit's aggregates, changed by earlier commands
        self._absent = absent if absent is not None else set()  # ids known not to exist
        self.rows: dict[str, list[Any]] = {}  # saved beside the events (e.g. usage keys)
        self._batch_rows = batch_rows  # a group commit's rows, from earlier commands
        self.batch = batch if batch is not None else {}  # what a group commit's handlers share

    @property
    def now(self) -> Any:
        return self.cause.occurred_at

    def find(self, kind: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate, or None if it does not exist (or is of another kind)."""
        if aggregate_id in self._seen:
            found = self._seen[aggregate_id]
        elif self._shared is not None and aggregate_id in self._shared:
            # a private copy: if this command is refused, the batch's copy stays untouched
            found = self._seen[aggregate_id] = self._shared[aggregate_id].private_copy()
        elif aggregate_id in self._absent:
            return None
        else:
            found = self.store.get(aggregate_id)
            if found is None:
                self._absent.add(aggregate_id)
                return None
            self._seen[aggregate_id] = found
        return found if isinstance(found, kind) else None

    def exists(self, aggregate_id: UUID) -> bool:
        """Whether any aggregate (of any kind, any app) has this id."""
        if aggregate_id in self._seen or (self._shared and aggregate_id in self._shared):
            return True
        return aggregate_id not in self._absent and self.store.get(aggregate_id) is not None

    def get(
        self,
        kind: type[A],
        aggregate_id: UUID,
        *,
        field: str,
        app_id: str,
        named: str | None = None,
    ) -> A:
        """The aggregate of this app, or NotFound naming the field (other apps' ids too); the
        message names it as the client did (`named`: a plan's key, a coupon's code) or by id."""
        found = self.find(kind, aggregate_id)
        if found is None or found.state.app_id != app_id:
            raise NotFound(f"{kind.TYPE} {named or aggregate_id} not found", field=field)
        return found

    def add(self, aggregate: A) -> A:
        self._seen[aggregate.id] = aggregate
        return aggregate

    def pending(self) -> list[Aggregate[Any]]:
        return [a for a in self._seen.values() if a.pending_events]

    def record_rows(self, table: str, rows: list[Any]) -> None:
        """Rows the recorder writes in the events' transaction (e.g. `usage_keys`): a
        unique key already taken fails the whole commit."""
        self.rows.setdefault(table, []).extend(rows)

    def merge_into_batch(self) -> None:
        """This command succeeded: its aggregates (with their new events) and rows join
        the batch."""
        assert self._shared is not None
        self._shared.update(self._seen)
        if self._batch_rows is not None:
            for table, rows in self.rows.items():
                self._batch_rows.setdefault(table, []).extend(rows)

    def commit(self, *extra: Aggregate[Any]) -> Any:
        """Save every changed aggregate at once; returns the store's recordings (or None)."""
        changed = [*self.pending(), *extra]
        if changed:
            return self.store.save(*changed, **self.rows)
        return None
