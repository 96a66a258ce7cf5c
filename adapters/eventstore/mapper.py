"""Maps pydantic domain events to stored events under stable names, with upcasting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import orjson
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder

from adapters.observability.tracing import current_traceparent
from domain.base import EVENT_TYPES, DomainEvent, Snapshot

SCHEMA_KEY = "schema_version"
RECORDED_KEY = "recorded_at"
TRACE_KEY = "trace_parent"  # the writing span's W3C traceparent, while tracing is on


class OrjsonTranscoder(Transcoder):
    """JSON via orjson: events are dumped to JSON-safe dicts by pydantic first."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


_IN_COLUMNS = {"originator_id", "originator_version"}  # ids and version have columns


def _stamps(event: DomainEvent | Snapshot) -> dict[str, Any]:
    """What the store adds to an event's fields: schema version, time, trace."""
    stamps: dict[str, Any] = {
        SCHEMA_KEY: type(event).SCHEMA_VERSION,
        RECORDED_KEY: datetime.now(UTC).isoformat(),
    }
    trace_parent = current_traceparent()
    if trace_parent:
        stamps[TRACE_KEY] = trace_parent
    return stamps


def encode_event_state(event: DomainEvent | Snapshot) -> dict[str, Any]:
    """The JSON body stored for an event (ids and version live in their own columns)."""
    state = event.model_dump(mode="json", exclude=_IN_COLUMNS)
    state.update(_stamps(event))
    return state


def encode_event_json(event: DomainEvent | Snapshot) -> bytes:
    """`encode_event_state` as JSON bytes in one pass: pydantic writes the event's fields
    straight to JSON (no dict of them first, then orjson), the stamps are appended."""
    fields = event.__pydantic_serializer__.to_json(event, exclude=_IN_COLUMNS)
    return fields[:-1] + b"," + orjson.dumps(_stamps(event))[1:]


def decode_event(topic: str, originator_id: Any, version: int, state: dict[str, Any]) -> Any:
    """Rebuild a domain event (or snapshot) from its stored name and JSON state."""
    state = dict(state)
    schema_version = state.pop(SCHEMA_KEY, 1)
    state.pop(RECORDED_KEY, None)
    state.pop(TRACE_KEY, None)
    if topic == Snapshot.NAME:
        return Snapshot(originator_id=originator_id, originator_version=version, **state)
    try:
        cls = EVENT_TYPES[topic]
    except KeyError:
        raise TypeError(f"unknown event type {topic!r}") from None
    state = cls.upcast(state, schema_version)
    return cls(originator_id=originator_id, originator_version=version, **state)


class PydanticMapper(Mapper[Any]):
    """Stores each event under its NAME, never its module path, so code can move freely."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        event = cast(DomainEvent | Snapshot, domain_event)
        if isinstance(self.transcoder, OrjsonTranscoder):
            data = encode_event_json(event)
        else:
            data = self.transcoder.encode(encode_event_state(event))
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data)
        return StoredEvent(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            topic=type(event).NAME,
            state=data,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        data = stored_event.state
        if self.cipher:
            data = self.cipher.decrypt(data)
        if self.compressor:
            data = self.compressor.decompress(data)
        return decode_event(
            stored_event.topic,
            stored_event.originator_id,
            stored_event.originator_version,
            self.transcoder.decode(data),
        )
