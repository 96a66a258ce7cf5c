"""Usage totals: per app, tenant and feature, in hour, day and month buckets.

Fed by QuotaConsumed only for the buckets: every counted consume adds its `amount` to the
hour, day and month bucket (UTC, calendar) containing the event's clock time, and one to the
bucket's event count. Refused consumes (QuotaExceeded) and duplicates record nothing counted,
so they never reach the buckets.

The current window of each quota is kept as its own row (`usage_windows`) from the quota
events themselves (QuotaConfigured, QuotaReconfigured, QuotaConsumed, QuotaReset,
QuotaDisabled): quota windows are anchored at the subscription's period start, not at
calendar months, so they cannot be derived from the calendar buckets. The row holds the
window and the quota's `used` counter as the events report it.

Bucket starts are ISO-8601 UTC text in one fixed width ("2026-01-05T13:00:00Z"), so text
order is time order on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from domain.errors import InvalidValue
from domain.quota import (
    QuotaConfigured,
    QuotaConsumed,
    QuotaDisabled,
    QuotaReconfigured,
    QuotaReset,
)
from projections.base import Projector, ViewTx
from projections.envelope import EventEnvelope

HOUR, DAY, MONTH = "hour", "day", "month"
GRANULARITIES = (HOUR, DAY, MONTH)

BUCKETS = "usage_buckets"
WINDOWS = "usage_windows"

_BUCKET_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def parse_instant(text: str, field: str = "time") -> datetime:
    """An ISO-8601 time as an aware UTC datetime; a time without offset is read as UTC
    and a bare date as its midnight UTC. Anything else is InvalidValue naming `field`."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidValue(f"{field} must be an ISO-8601 time", field=field)
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidValue(f"{field} must be an ISO-8601 time, got {text!r}", field=field) from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


def floor_to(instant: datetime, granularity: str) -> datetime:
    """The start of the UTC hour, day or calendar month containing `instant`."""
    instant = instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if granularity == HOUR:
        return instant
    instant = instant.replace(hour=0)
    if granularity == DAY:
        return instant
    if granularity == MONTH:
        return instant.replace(day=1)
    raise InvalidValue(
        f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}",
        field="granularity",
    )


def next_bucket(start: datetime, granularity: str) -> datetime:
    """The start of the bucket after the one starting at `start`."""
    if granularity == HOUR:
        return start + timedelta(hours=1)
    if granularity == DAY:
        return start + timedelta(days=1)
    year, month = divmod(start.year * 12 + start.month, 12)  # month is 0-based here
    return start.replace(year=year, month=month + 1)


def ceil_to(instant: datetime, granularity: str) -> datetime:
    """The first bucket start at or after `instant`."""
    start = floor_to(instant, granularity)
    return start if start == instant.astimezone(UTC) else next_bucket(start, granularity)


def bucket_text(instant: datetime) -> str:
    """Fixed-width UTC text of a bucket boundary (always whole hours)."""
    return instant.astimezone(UTC).strftime(_BUCKET_FORMAT)


def _window(data: dict[str, Any]) -> tuple[str | None, str | None]:
    window = data.get("window")
    if not window:
        return None, None
    return str(window["start"]), str(window["end"])


class UsageProjector(Projector):
    """Builds `usage_buckets` and `usage_windows` from quota events."""

    NAME: ClassVar[str] = "usage"
    TABLES: ClassVar[dict[str, tuple[list[str], list[str]]]] = {  # type: ignore[assignment]
        BUCKETS: (
            [
                "app_id TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",
                "feature_key TEXT NOT NULL",
                "granularity TEXT NOT NULL",
                "bucket_start TEXT NOT NULL",
                "quantity BIGINT NOT NULL DEFAULT 0",
                "events BIGINT NOT NULL DEFAULT 0",
            ],
            ["app_id", "tenant_id", "feature_key", "granularity", "bucket_start"],
        ),
        WINDOWS: (
            [
                "app_id TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",
                "feature_key TEXT NOT NULL",
                "period TEXT NOT NULL",
                "anchor TEXT NOT NULL",
                "window_start TEXT",
                "window_end TEXT",
                "quantity BIGINT NOT NULL DEFAULT 0",
                "events BIGINT NOT NULL DEFAULT 0",
                "enabled BOOLEAN NOT NULL",
                "updated_at TEXT NOT NULL",
            ],
            ["app_id", "tenant_id", "feature_key"],
        ),
    }
    HANDLES: ClassVar[frozenset[str]] = frozenset(
        {
            QuotaConfigured.NAME,
            QuotaReconfigured.NAME,
            QuotaConsumed.NAME,
            QuotaReset.NAME,
            QuotaDisabled.NAME,
        }
    )

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        data = event.data
        key = {
            "app_id": event.app_id,
            "tenant_id": event.tenant_id or "",
            "feature_key": str(data["feature_key"]),
        }
        start, end = _window(data)
        if event.type == QuotaConfigured.NAME:
            tx.upsert(
                WINDOWS,
                key,
                {
                    "period": str(data["period"]),
                    "anchor": str(data["anchor"]),
                    "window_start": start,
                    "window_end": end,
                    "quantity": 0,
                    "events": 0,
                    "enabled": True,
                    "updated_at": event.occurred_at,
                },
            )
            return
        row = tx.get(WINDOWS, key)
        values: dict[str, Any]
        if event.type == QuotaConsumed.NAME:
            amount = int(data["amount"])
            occurred = parse_instant(event.occurred_at, "occurred_at")
            for granularity in GRANULARITIES:
                bucket = bucket_text(floor_to(occurred, granularity))
                tx.increment(
                    BUCKETS,
                    {**key, "granularity": granularity, "bucket_start": bucket},
                    {"quantity": amount, "events": 1},
                )
            same_window = row is not None and row["window_start"] == start
            events = int(row["events"]) + 1 if row is not None and same_window else 1
            values = {"quantity": int(data["used"]), "events": events}
        elif event.type == QuotaReset.NAME:
            values = {"quantity": 0, "events": 0}
        elif event.type == QuotaReconfigured.NAME:
            values = {"period": str(data["period"]), "quantity": int(data["used"]), "enabled": True}
        else:  # QuotaDisabled
            values = {"quantity": int(data["used"]), "enabled": False}
        values.update(window_start=start, window_end=end, updated_at=event.occurred_at)
        if row is not None:  # an upsert writes whole rows (NOT NULL is checked before conflicts)
            values = {**{c: v for c, v in row.items() if c not in key}, **values}
        else:
            # Only reachable for an event log that starts after the quota's QuotaConfigured:
            # keep counting, anchored at the window the event names.
            values = {
                "period": _period_of(start, end),
                "anchor": start or event.occurred_at,
                "enabled": True,
                "events": 0,
                **values,
            }
        tx.upsert(WINDOWS, key, values)


def _period_of(start: str | None, end: str | None) -> str:
    if start is None or end is None:
        return "absolute"
    length = parse_instant(end) - parse_instant(start)
    return DAY if length <= timedelta(days=1) else MONTH
