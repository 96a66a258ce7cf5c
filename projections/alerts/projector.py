"""Alerts: one row per alert (its terms, and whether it was deleted) and one row per
AlertTriggered event, keyed by the event's log position (so a replay writes the same rows).

Times are stored as the events carry them (ISO-8601 text); thresholds as JSON text
(`{"percent": 80}`, `{"units": 1000}`, `{"amount": {"amount", "currency"}}`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson

from domain.alert import AlertCreated, AlertDeleted, AlertTriggered
from projections.base import Projector, ViewTx
from projections.envelope import EventEnvelope

ALERTS = "alerts"
TRIGGERS = "alert_triggers"


def dump(value: Any) -> str:
    return orjson.dumps(value).decode()


class AlertsProjector(Projector):
    NAME: ClassVar[str] = "alerts"
    TABLES: ClassVar[dict[str, tuple[Sequence[str], Sequence[str]]]] = {
        ALERTS: (
            [
                "app_id TEXT NOT NULL",
                "alert_id TEXT NOT NULL",
                "alert_key TEXT NOT NULL",
                "kind TEXT NOT NULL",
                "tenant_id TEXT",
                "feature_key TEXT",
                "thresholds TEXT NOT NULL",
                "created_at TEXT NOT NULL",
                "created_position BIGINT NOT NULL",
                "deleted BOOLEAN NOT NULL",
                "deleted_at TEXT",
            ],
            ["app_id", "alert_id"],
        ),
        TRIGGERS: (
            [
                "app_id TEXT NOT NULL",
                "alert_id TEXT NOT NULL",
                "position BIGINT NOT NULL",
                "event_id TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",
                "threshold TEXT NOT NULL",
                "value BIGINT NOT NULL",
                "currency TEXT",
                "quota_limit BIGINT",
                "period_start TEXT",
                "period_end TEXT",
                "period_key TEXT NOT NULL",
                "source_position BIGINT NOT NULL",
                "source_event_id TEXT NOT NULL",
                "observed_at TEXT NOT NULL",
                "triggered_at TEXT NOT NULL",
            ],
            ["app_id", "alert_id", "position"],
        ),
    }
    HANDLES: ClassVar[frozenset[str]] = frozenset(
        {AlertCreated.NAME, AlertDeleted.NAME, AlertTriggered.NAME}
    )

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        key = {"app_id": event.app_id, "alert_id": str(event.aggregate_id)}
        data = event.data
        if event.type == AlertCreated.NAME:
            tx.upsert(
                ALERTS,
                key,
                {
                    "alert_key": data["alert_key"],
                    "kind": data["kind"],
                    "tenant_id": event.tenant_id,
                    "feature_key": data.get("feature_key"),
                    "thresholds": dump(data["thresholds"]),
                    "created_at": event.occurred_at,
                    "created_position": event.position,
                    "deleted": False,
                    "deleted_at": None,
                },
            )
        elif event.type == AlertDeleted.NAME:
            row = tx.get(ALERTS, key)
            if row is not None:  # every column: an upsert's insert half checks NOT NULL
                values = {k: v for k, v in row.items() if k not in key}
                tx.upsert(ALERTS, key, {**values, "deleted": True, "deleted_at": event.occurred_at})
        else:
            tx.upsert(TRIGGERS, {**key, "position": event.position}, _trigger_row(event))


def _trigger_row(event: EventEnvelope) -> dict[str, Any]:
    data = event.data
    return {
        "event_id": str(event.id),
        "tenant_id": event.tenant_id or "",
        "threshold": dump(data["threshold"]),
        "value": data["value"],
        "currency": data.get("currency"),
        "quota_limit": data.get("limit"),
        "period_start": data.get("period_start"),
        "period_end": data.get("period_end"),
        "period_key": data["period_key"],
        "source_position": data["source_position"],
        "source_event_id": str(data["source_event_id"]),
        "observed_at": data["observed_at"],
        "triggered_at": event.occurred_at,
    }
