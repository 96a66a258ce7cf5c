"""Read the event store by global position as envelopes (for the relay, projectors, audit)."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import orjson

from domain.base import EVENT_TYPES
from projections.envelope import EventEnvelope, envelope_from_state


def aggregate_type_of(topic: str) -> str:
    cls = EVENT_TYPES.get(topic)
    return cls.AGGREGATE_TYPE if cls is not None else "unknown"


def redacted(topic: str, state: dict[str, Any]) -> dict[str, Any]:
    """A stored event's state without its secret fields (key hashes): what may leave."""
    cls = EVENT_TYPES.get(topic)
    if cls is None or not cls.SECRET_FIELDS:
        return state
    return {k: v for k, v in state.items() if k not in cls.SECRET_FIELDS}


def to_envelope(notification: Any) -> EventEnvelope:
    """The published form of a stored event; secret fields (key hashes) are left out."""
    state = redacted(notification.topic, orjson.loads(notification.state))
    return envelope_from_state(
        topic=notification.topic,
        aggregate_type=aggregate_type_of(notification.topic),
        position=notification.id,
        aggregate_id=notification.originator_id,
        version=notification.originator_version,
        state=state,
    )


def read_envelopes(
    recorder: Any,
    after: int,
    limit: int,
    stop: int | None = None,
    topics: Collection[str] = (),
) -> list[EventEnvelope]:
    """Up to `limit` events with position > after (and <= stop), in position order; only
    the named event types when `topics` is given."""
    notifications = recorder.select_notifications(
        start=after + 1, limit=limit, stop=stop, topics=tuple(topics), inclusive_of_start=True
    )
    return [to_envelope(n) for n in notifications]


def iter_envelopes(
    recorder: Any,
    after: int = 0,
    batch: int = 1000,
    stop: int | None = None,
    topics: Collection[str] = (),
) -> Iterator[list[EventEnvelope]]:
    """Every event after a position, in batches, up to `stop` (default: the head now)."""
    head = (recorder.max_notification_id() or 0) if stop is None else stop
    while after < head:
        envelopes = read_envelopes(recorder, after, batch, head, topics)
        if not envelopes:
            return
        yield envelopes
        after = envelopes[-1].position
