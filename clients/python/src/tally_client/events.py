"""Typed event envelopes (SURFACE.md "Events for downstream services"), upcast on arrival.

Every event on the stream carries the `schema_version` of its `data`. A subscriber may meet
events written before a type's shape changed: `upcast` brings them to the newest version this
client knows, one step at a time, so a handler only ever sees one shape per type. Every type is
at version 1 today; a change registers its step with `@upcaster("Type", from_version)`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

LATEST_SCHEMA_VERSION: dict[str, int] = {}
"""The newest `data` version of each type, when above 1 (the ones registered below)."""

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class Event(BaseModel):
    """One committed Tally event, as published (and upcast): dedupe on `id`."""

    model_config = ConfigDict(frozen=True, extra="allow")

    id: UUID
    type: str
    position: int
    aggregate_id: UUID
    aggregate_type: str
    version: int
    app_id: str
    tenant_id: str | None = None
    occurred_at: datetime
    recorded_at: datetime | None = None
    schema_version: int = 1
    actor: str | None = None
    on_behalf_of: str | None = None
    command_id: str | None = None
    correlation_id: str | None = None
    data: dict[str, Any]


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the step that turns `event_type`'s data at `from_version` into the next."""

    def register(step: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = step
        newest = LATEST_SCHEMA_VERSION.get(event_type, 1)
        LATEST_SCHEMA_VERSION[event_type] = max(newest, from_version + 1)
        return step

    return register


def upcast(event: Event) -> Event:
    """The event with its data at the newest version known here (a newer one is kept as is:
    a later Tally may add fields, which a handler should ignore)."""
    version, data = event.schema_version, dict(event.data)
    newest = LATEST_SCHEMA_VERSION.get(event.type, 1)
    while version < newest:
        step = _UPCASTERS.get((event.type, version))
        if step is None:
            raise LookupError(f"{event.type}: no upcaster from schema version {version}")
        data, version = step(data), version + 1
    if version == event.schema_version:
        return event
    return event.model_copy(update={"data": data, "schema_version": version})


def parse_event(body: bytes | str) -> Event:
    """An event from its JSON body on the stream, upcast."""
    return upcast(Event.model_validate_json(body))
