"""The event store: the eventsourcing library's Application on PostgreSQL or SQLite."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar, cast
from urllib.parse import unquote, urlparse
from uuid import UUID, uuid4

import structlog
from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    ProjectorFunction,
)
from eventsourcing.persistence import Recording
from eventsourcing.utils import get_topic

from adapters.eventstore.binary_insert import BinaryInsertPostgresRecorder
from adapters.eventstore.bulk_load import events_after, is_postgres, latest_snapshots
from adapters.eventstore.fail_fast import (
    CONNECT_TIMEOUT,
    POOL_TIMEOUT,
    STATEMENT_TIMEOUT,
    FailFastPostgresFactory,
)
from adapters.eventstore.mapper import OrjsonTranscoder, PydanticMapper
from adapters.eventstore.positions import existing
from adapters.eventstore.projecting import apply_events
from adapters.eventstore.usage_keys import KeyedSQLiteRecorder
from adapters.observability.tracing import span
from adapters.settings import Settings
from domain.aggregates import ALL_AGGREGATES
from domain.base import Aggregate, Snapshot

log = structlog.get_logger(__name__)


class Ledger(Application[Any]):
    """All of Tally's aggregates in one event store, so positions order every event."""

    name = "Tally"
    snapshot_class = Snapshot
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {}

    def __init__(self, env: dict[str, str], snapshot_interval: int) -> None:
        # the interval comes from settings, so it is set per instance (the library reads self.)
        self.snapshotting_intervals = {cls: snapshot_interval for cls in ALL_AGGREGATES}  # type: ignore[misc]
        super().__init__(env)

    def take_snapshot(
        self,
        aggregate_id: Any,
        version: int | None = None,
        projector_func: ProjectorFunction[Any, Any] = apply_events,
    ) -> None:
        """Snapshots are taken after the command committed: a failure here must not turn a
        committed command into an error (the next interval tries again)."""
        try:
            super().take_snapshot(aggregate_id, version, projector_func)
        except Exception:
            log.warning("snapshot_failed", aggregate_id=str(aggregate_id), version=version)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[Any]]:
        """Record the pending events of `objs` in one transaction (a span while tracing)."""
        with span("eventstore.save", {"tally.aggregates": len(objs)}):
            return super().save(*objs, **kwargs)

    def get(self, aggregate_id: Any, version: int | None = None) -> Any:
        """Load an aggregate (at a version), or None when it does not exist. One from the
        cache is the caller's own copy (`private_copy`: the library's `deepcopy` gives the
        same, walking every value, UUIDs and datetimes included, through `copy`)."""
        try:
            found = self.repository.get(
                aggregate_id,
                version=version,
                projector_func=apply_events,
                deepcopy_from_cache=False,
            )
        except AggregateNotFoundError:
            return None
        return found.private_copy() if version is None else found

    def get_many(self, aggregate_ids: Iterable[UUID]) -> dict[UUID, Any]:
        """Those of these aggregates that exist, current, each a copy of its own: the ones
        in the cache brought up to date and the others read from their last snapshot, in
        two queries for all (PostgreSQL; elsewhere one query for which exist, then one
        `get` each)."""
        ids = list(dict.fromkeys(aggregate_ids))
        cache = self.repository.cache
        if cache is None or not is_postgres(self.recorder) or self.snapshots is None:
            present = existing(self.recorder, ids)
            loaded = {i: self.get(i) for i in ids if i in present}
            return {i: aggregate for i, aggregate in loaded.items() if aggregate is not None}
        cached = {i: kept for i in ids if (kept := _cached(cache, i)) is not None}
        missing = [i for i in ids if i not in cached]
        snapshots = latest_snapshots(self.snapshots.recorder, missing)
        after = {i: 0 for i in missing} | {i: s.originator_version for i, s in snapshots.items()}
        stored = events_after(self.recorder, after | {i: a.version for i, a in cached.items()})
        found: dict[UUID, Any] = {}
        for i in ids:
            snapshot = [snapshots[i]] if i in snapshots else []
            aggregate = self._brought_up(cached.get(i), [*snapshot, *stored.get(i, [])])
            if aggregate is not None:
                found[i] = aggregate
        return found

    def _brought_up(self, cached: Any, stored: list[Any]) -> Any:
        """A copy of the cached aggregate (or of none) with these stored events applied;
        the result goes into the cache (the cached object itself is never changed)."""
        if cached is not None and not stored:
            return cached.private_copy()
        start = cached.private_copy() if cached is not None else None
        aggregate = apply_events(start, [self.mapper.to_domain_event(s) for s in stored])
        if aggregate is None:
            return None
        self.repository.cache.put(aggregate.id, aggregate)  # type: ignore[union-attr]
        return aggregate.private_copy()

    def _record(self, processing_event: ProcessingEvent[Any]) -> list[Recording[Any]]:
        """Also keep a copy of every aggregate saved in the cache (the library skips it
        when the cache fast-forwards), so the next load of one reads only the events
        after it (none, usually) instead of the aggregate's snapshot and history."""
        recordings = super()._record(processing_event)
        cache = self.repository.cache
        if cache is not None and self.repository.fastforward:
            for aggregate_id, aggregate in processing_event.aggregates.items():
                cache.put(aggregate_id, cast(Aggregate[Any], aggregate).private_copy())
        return recordings


def _cached(cache: Any, aggregate_id: UUID) -> Any:
    try:
        return cache.get(aggregate_id)
    except KeyError:
        return None


def ledger_env(settings: Settings, schema: str | None = None) -> dict[str, str]:
    """Translate Tally settings into the eventsourcing library's environment."""
    env = {
        "MAPPER_TOPIC": get_topic(PydanticMapper),
        "TRANSCODER_TOPIC": get_topic(OrjsonTranscoder),
        "IS_SNAPSHOTTING_ENABLED": "y",
        "AGGREGATE_CACHE_MAXSIZE": str(settings.aggregate_cache_size),
        "AGGREGATE_CACHE_FASTFORWARD": "y",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "y",
        # PostgreSQL: the tables come from the migrations (adapters/migrations), under a lock
        "CREATE_TABLE": "n" if settings.is_postgres else "y",
    }
    if settings.is_postgres:
        url = urlparse(settings.database_url)
        timeouts = settings.postgres_timeouts
        env |= {
            "PERSISTENCE_MODULE": get_topic(FailFastPostgresFactory),
            "APPLICATION_RECORDER_TOPIC": get_topic(BinaryInsertPostgresRecorder),
            "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": unquote(url.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(url.password or ""),
            # the library's pool wait (an integer; FailFastPostgresFactory sets the exact one)
            "POSTGRES_CONNECT_TIMEOUT": str(math.ceil(timeouts.pool)),
            POOL_TIMEOUT: str(timeouts.pool),
            CONNECT_TIMEOUT: str(timeouts.connect),
            STATEMENT_TIMEOUT: str(timeouts.statement),
            "POSTGRES_POOL_SIZE": "8",
            "POSTGRES_MAX_OVERFLOW": "8",
            "POSTGRES_LOCK_TIMEOUT": "5",
        }
        if schema:
            env["POSTGRES_SCHEMA"] = schema
    else:
        env |= {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "APPLICATION_RECORDER_TOPIC": get_topic(KeyedSQLiteRecorder),
            "SQLITE_DBNAME": _shared_if_memory(settings.sqlite_path),
            "SQLITE_LOCK_TIMEOUT": "10",
        }
    return env


def _shared_if_memory(path: str) -> str:
    """An in-memory store shared by this ledger's connections (one per thread otherwise)."""
    if path == ":memory:":
        return f"file:tally-{uuid4().hex}?mode=memory&cache=shared"
    return path


def open_ledger(settings: Settings, schema: str | None = None) -> Ledger:
    return Ledger(ledger_env(settings, schema), settings.snapshot_interval)
