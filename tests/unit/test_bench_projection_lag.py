"""P4 (benchmarks/projection_lag.py) times every consume it sent: one per QuotaConsumed, one
per fact of a group commit's UsageRecorded (the ingest writes one per quota per batch)."""

from __future__ import annotations

import uuid
from typing import Any

from benchmarks.projection_lag import usage_events_in
from projections.envelope import EventEnvelope


def envelope(kind: str, data: dict[str, Any]) -> EventEnvelope:
    return EventEnvelope(
        id=uuid.uuid4(),
        type=kind,
        position=1,
        aggregate_id=uuid.uuid4(),
        aggregate_type="Quota",
        version=1,
        app_id="bench",
        tenant_id="t0",
        occurred_at="2026-01-01T00:00:00+00:00",
        recorded_at="2026-01-01T00:00:00+00:00",
        schema_version=1,
        data=data,
    )


def test_each_consume_counted_by_an_event_is_timed_once() -> None:
    assert usage_events_in(envelope("QuotaConsumed", {"amount": 3})) == 1
    facts = [{"value": 1}, {"value": 2}]
    assert usage_events_in(envelope("UsageRecorded", {"facts": facts, "late_facts": facts})) == 4
    assert usage_events_in(envelope("UsageRecorded", {"facts": facts})) == 2
    assert usage_events_in(envelope("QuotaConfigured", {})) == 0
