"""Ports of the usage ingest: the idempotency keys the database holds, typed-event meters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from domain.errors import InvalidValue


class UsageKeys(Protocol):
    """Port: which idempotency keys the database already counted, or refused by a hard limit."""

    def counted(self, app_id: str, keys: Iterable[str]) -> set[str]:
        """The keys among `keys` already counted (kept at least 35 days)."""

    def refused(self, app_id: str, keys: Iterable[str]) -> set[str]:
        """The keys among `keys` already refused once by a hard limit."""


Reading = tuple[str, int, dict[str, Any] | None]
"""(feature_key, value, group) of one typed event for one of the tenant's features."""


@dataclass(frozen=True)
class TypedEvent:
    """A typed usage event to resolve: `field` is where it sits in the request."""

    tenant_id: str
    event_type: str
    properties: Mapping[str, Any]
    field: str


class MeterResolver(Protocol):
    """Port: what typed usage events feed (the app's meters, the tenant's features)."""

    def resolve(self, app_id: str, events: Sequence[TypedEvent]) -> list[list[Reading]]:
        """Per event, one reading per feature of its tenant that it feeds; InvalidValue
        naming `<field>.event_type` or `<field>.properties.<name>` for bad input."""


class NoMeters(MeterResolver):
    """No meter catalog: only plain {feature_key, quantity} events are known."""

    def resolve(self, app_id: str, events: Sequence[TypedEvent]) -> list[list[Reading]]:
        for event in events:
            raise InvalidValue(
                f"unknown event type {event.event_type!r}", field=f"{event.field}.event_type"
            )
        return []


class AggregateLoader(Protocol):
    """Port: bulk loads of the aggregates a writer keeps current (one query for many)."""

    def load(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Any]:
        """The stored aggregates among these ids, each at its latest version."""

    def saved(self, aggregates: Iterable[Any]) -> None:
        """These were just saved as they are."""

    def forget(self, aggregate_ids: Iterable[UUID]) -> None:
        """These may hold changes that were never saved."""


@dataclass
class LoadOneByOne(AggregateLoader):
    """Loads through the event store, one aggregate at a time (keeps nothing)."""

    store: Any

    def load(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Any]:
        found = {i: self.store.get(i) for i in aggregate_ids}
        return {i: a for i, a in found.items() if a is not None}

    def saved(self, aggregates: Iterable[Any]) -> None:
        return None

    def forget(self, aggregate_ids: Iterable[UUID]) -> None:
        return None
