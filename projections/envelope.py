"""The published form of an event: what projectors and downstream subscribers receive."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

BASE_FIELDS = frozenset(
    {
        "timestamp",
        "event_id",
        "app_id",
        "tenant_id",
        "actor",
        "on_behalf_of",
        "command_id",
        "correlation_id",
        "schema_version",
        "recorded_at",
        "trace_parent",
    }
)


class EventEnvelope(BaseModel):
    """One committed event with its global position (the JSON body on NATS, see SURFACE.md)."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    type: str
    position: int
    aggregate_id: UUID
    aggregate_type: str
    version: int
    app_id: str
    tenant_id: str | None
    occurred_at: str
    recorded_at: str | None
    schema_version: int
    actor: str | None = None
    on_behalf_of: str | None = None  # whom the actor acted for (HTTP: a key's on_behalf_of)
    command_id: str | None = None
    correlation_id: str | None = None
    data: dict[str, Any]
    trace_parent: str | None = Field(default=None, exclude=True)
    """The W3C traceparent of the command that wrote it (a NATS header, not in the body)."""

    def subject(self, prefix: str = "tally.events") -> str:
        return f"{prefix}.{self.app_id}.{self.aggregate_type}.{self.type}"

    def headers(self) -> dict[str, str]:
        return {
            "Nats-Msg-Id": str(self.id),
            "Tally-Position": str(self.position),
            "Tally-Aggregate-Id": str(self.aggregate_id),
            "Tally-Aggregate-Version": str(self.version),
            "Tally-Tenant": self.tenant_id or "",
            **self._context_headers(),
        }

    def _context_headers(self) -> dict[str, str]:
        """Correlation id and trace context, when the event has them."""
        headers = {"Tally-Correlation-Id": self.correlation_id} if self.correlation_id else {}
        if self.trace_parent:
            headers["traceparent"] = self.trace_parent
        return headers


def envelope_from_state(
    *,
    topic: str,
    aggregate_type: str,
    position: int,
    aggregate_id: UUID,
    version: int,
    state: dict[str, Any],
) -> EventEnvelope:
    """Build the envelope from a stored event's name, columns and JSON state."""
    return EventEnvelope(
        id=state["event_id"],
        type=topic,
        position=position,
        aggregate_id=aggregate_id,
        aggregate_type=aggregate_type,
        version=version,
        app_id=state["app_id"],
        tenant_id=state.get("tenant_id"),
        occurred_at=state["timestamp"],
        recorded_at=state.get("recorded_at"),
        schema_version=state.get("schema_version", 1),
        actor=state.get("actor"),
        on_behalf_of=state.get("on_behalf_of"),
        command_id=state.get("command_id"),
        correlation_id=state.get("correlation_id"),
        trace_parent=state.get("trace_parent"),
        data={k: v for k, v in state.items() if k not in BASE_FIELDS},
    )
