"""Time travel: an aggregate as it was at any past instant."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from uuid import UUID

from adapters.eventstore.ledger import Ledger
from domain.base import DomainEvent
from domain.clock import ensure_aware


def version_at(ledger: Ledger, aggregate_id: UUID, instant: datetime) -> int | None:
    """The last version whose event occurred at or before the instant (None: not yet born)."""
    instant = ensure_aware(instant)
    version = None
    for event in ledger.events.get(aggregate_id):
        if cast(DomainEvent, event).timestamp > instant:
            break
        version = event.originator_version
    return version


def state_as_of(ledger: Ledger, aggregate_id: UUID, instant: datetime) -> Any:
    version = version_at(ledger, aggregate_id, instant)
    return None if version is None else ledger.get(aggregate_id, version=version)
