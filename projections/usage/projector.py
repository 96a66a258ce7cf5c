"""Usage totals: per app, tenant and feature, in hour, day and month buckets, and the facts.

Fed by QuotaConsumed only for the buckets and facts. Every counted consume is one fact in
`usage_facts` (its event id, log position, clock time, value = `amount`, and meter), and
folds into the hour, day and month bucket (UTC, calendar) containing its clock time by the
meter the event names (domain/metering.py; events without one summed):
- sum and count add to the bucket (`increment`, no read);
- unique_count adds one when the value is new in the bucket: the distinct values of each
  bucket are rows of `usage_bucket_values` (kept for unique_count events only);
- max keeps the larger of the bucket's quantity and the value;
- latest takes the value when the event is at least as late, by (clock time, position),
  as the one that set the bucket, which `usage_bucket_latest` remembers.
A meter change carries each bucket's quantity over; later events fold in by the new meter.
Every bucket also counts its events. Refused consumes (QuotaExceeded) and duplicates record
nothing counted, so they never reach the buckets or the facts. The facts are what billing
reads (`billable_usage`): any period, any meter, with a log-position cut-off.

The current window of each quota is kept as its own row (`usage_windows`) from the quota
events themselves (QuotaConfigured, QuotaReconfigured, QuotaConsumed, QuotaReset,
QuotaDisabled): quota windows are anchored at the subscription's period start, not at
calendar months, so they cannot be derived from the calendar buckets. The row holds the
window and the quota's `used` counter as the events report it.

Bucket starts are ISO-8601 UTC text in one fixed width ("2026-01-05T13:00:00Z"), and so
are fact times, to the microsecond ("2026-01-05T13:04:05.000000Z"), so text order is time
order on PostgreSQL and SQLite alike. A fact's primary key starts with (app_id, tenant_id,
feature_key, occurred_at): the index a per-tenant period query needs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from domain.catalog import Meter
from domain.errors import InvalidValue
from domain.metering import is_newest, remembers_values, step
from domain.quota import (
    QuotaConfigured,
    QuotaConsumed,
    QuotaDisabled,
    QuotaReconfigured,
    QuotaReset,
    UsageRecorded,
)
from projections.base import Projector, ViewTx
from projections.envelope import EventEnvelope

HOUR, DAY, MONTH = "hour", "day", "month"
GRANULARITIES = (HOUR, DAY, MONTH)

BUCKETS = "usage_buckets"
WINDOWS = "usage_windows"
FACTS = "usage_facts"
BUCKET_VALUES = "usage_bucket_values"
BUCKET_LATEST = "usage_bucket_latest"
GROUP_BUCKETS = "usage_group_buckets"
GROUP_VALUES = "usage_group_values"
GROUP_LATEST = "usage_group_latest"
PLAIN = (BUCKETS, BUCKET_VALUES, BUCKET_LATEST)
GROUPED = (GROUP_BUCKETS, GROUP_VALUES, GROUP_LATEST)
Tables = tuple[str, str, str]  # the buckets, their distinct values, their latest marks

_BUCKET_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_INSTANT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_ORDER_FREE = (Meter.SUM, Meter.COUNT)  # the bucket's new quantity never needs its old one


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


def bucket_starts(instant: datetime) -> dict[str, str]:
    """The text of the hour, day and month bucket containing `instant` (as `bucket_text`
    of `floor_to` each, from one formatting: every fact needs all three)."""
    hour = bucket_text(floor_to(instant, HOUR))
    return {HOUR: hour, DAY: hour[:11] + "00:00:00Z", MONTH: hour[:8] + "01T00:00:00Z"}


def instant_text(instant: datetime) -> str:
    """Fixed-width UTC text of a fact's time, to the microsecond."""
    return instant.astimezone(UTC).strftime(_INSTANT_FORMAT)


def _window(data: dict[str, Any]) -> tuple[str | None, str | None]:
    window = data.get("window")
    if not window:
        return None, None
    return str(window["start"]), str(window["end"])


_BUCKET_TABLES: dict[str, tuple[list[str], list[str]]] = {
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
    BUCKET_VALUES: (
        [
            "app_id TEXT NOT NULL",
            "tenant_id TEXT NOT NULL",
            "feature_key TEXT NOT NULL",
            "granularity TEXT NOT NULL",
            "bucket_start TEXT NOT NULL",
            "value BIGINT NOT NULL",
        ],
        ["app_id", "tenant_id", "feature_key", "granularity", "bucket_start", "value"],
    ),
    BUCKET_LATEST: (
        [
            "app_id TEXT NOT NULL",
            "tenant_id TEXT NOT NULL",
            "feature_key TEXT NOT NULL",
            "granularity TEXT NOT NULL",
            "bucket_start TEXT NOT NULL",
            "occurred_at TEXT NOT NULL",
            "position BIGINT NOT NULL",
        ],
        ["app_id", "tenant_id", "feature_key", "granularity", "bucket_start"],
    ),
}


def _with_group(columns: list[str], key: list[str]) -> tuple[list[str], list[str]]:
    """A bucket table's grouped twin: the same columns and key, with the group after the
    bucket's start."""
    grouped_columns = [*columns[:5], "group_key TEXT NOT NULL", *columns[5:]]
    return grouped_columns, [*key[:5], "group_key", *key[5:]]


class UsageProjector(Projector):
    """Builds the usage buckets, facts and quota windows from quota events."""

    NAME: ClassVar[str] = "usage"
    TABLES: ClassVar[dict[str, tuple[list[str], list[str]]]] = {  # type: ignore[assignment]
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
        FACTS: (
            [
                "app_id TEXT NOT NULL",
                "tenant_id TEXT NOT NULL",
                "feature_key TEXT NOT NULL",
                "occurred_at TEXT NOT NULL",
                "event_id TEXT NOT NULL",
                "position BIGINT NOT NULL",
                "value BIGINT NOT NULL",
                "meter TEXT NOT NULL",
            ],
            ["app_id", "tenant_id", "feature_key", "occurred_at", "event_id"],
        ),
        **_BUCKET_TABLES,
        **{
            grouped: _with_group(*_BUCKET_TABLES[plain])
            for plain, grouped in zip(PLAIN, GROUPED, strict=True)
        },
    }
    HANDLES: ClassVar[frozenset[str]] = frozenset(
        {
            QuotaConfigured.NAME,
            QuotaReconfigured.NAME,
            QuotaConsumed.NAME,
            UsageRecorded.NAME,
            QuotaReset.NAME,
            QuotaDisabled.NAME,
        }
    )

    def prefetch(self, events: Sequence[EventEnvelope], tx: ViewTx) -> None:
        """The quota window rows the batch's events read, in one query."""
        keys = [_window_key(e) for e in events if e.type in self.HANDLES]
        if keys:
            tx.prefetch(WINDOWS, keys)

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        data = event.data
        key = _window_key(event)
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
            _count(event, key, tx)
            same_window = row is not None and row["window_start"] == start
            events = int(row["events"]) + 1 if row is not None and same_window else 1
            values = {"quantity": int(data["used"]), "events": events}
        elif event.type == UsageRecorded.NAME:
            counted = _record_facts(event, key, tx)
            same_window = row is not None and row["window_start"] == start
            events = int(row["events"]) + counted if row is not None and same_window else counted
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


def _window_key(event: EventEnvelope) -> dict[str, Any]:
    return {
        "app_id": event.app_id,
        "tenant_id": event.tenant_id or "",
        "feature_key": str(event.data["feature_key"]),
    }


def _period_of(start: str | None, end: str | None) -> str:
    if start is None or end is None:
        return "absolute"
    length = parse_instant(end) - parse_instant(start)
    return DAY if length <= timedelta(days=1) else MONTH


def _count(event: EventEnvelope, key: dict[str, Any], tx: ViewTx) -> None:
    """One counted consume (QuotaConsumed): its fact, folded into the buckets."""
    meter = Meter(event.data.get("meter", Meter.SUM))
    occurred = parse_instant(event.occurred_at, "occurred_at")
    _fact(event, key, tx, meter, (str(event.id), int(event.data["amount"]), occurred))


def _record_facts(event: EventEnvelope, key: dict[str, Any], tx: ViewTx) -> int:
    """A batch (UsageRecorded): each fact at its own time, in the plain buckets and, when it
    carries a group (a grouped meter), in its group's buckets too; answers how many count
    in the current window (late facts land in their own buckets only). Sum and count facts
    are added up per time and group first, then once per bucket (one increment each)."""
    meter = Meter(event.data["meter"])
    facts = event.data["facts"]
    added: dict[tuple[str, str], list[int]] = {}  # (time text, group) -> quantity, events
    times: dict[str, _Time] = {}  # a batch's facts mostly share their time: read it once
    for index, fact in enumerate([*facts, *event.data.get("late_facts", ())]):
        occurred, at, starts = _time_of(str(fact["at"]), times)
        reading = (f"{event.id}:{index}", int(fact["value"]), occurred)
        _fact_row(event, key, tx, meter, reading, at)
        group = group_key(fact.get("group"))
        if meter in _ORDER_FREE:
            total = added.setdefault((str(fact["at"]), group), [0, 0])
            total[0] += step(meter, 0, reading[1], known=False, newest=True)
            total[1] += 1
            continue
        for bucket_id in _bucket_ids(starts, group):
            bucket, tables = _bucket(key, bucket_id)
            _fold(tx, bucket, meter, reading[1], (at, event.position), tables)
    sums: dict[tuple[str, ...], list[int]] = {}  # one increment per bucket
    for (text, group), (quantity, events) in added.items():
        for bucket_id in _bucket_ids(times[text][2], group):
            total = sums.setdefault(bucket_id, [0, 0])
            total[0] += quantity
            total[1] += events
    for summed, (quantity, events) in sums.items():
        bucket, tables = _bucket(key, summed)
        tx.increment(tables[0], bucket, {"quantity": quantity, "events": events})
    return len(facts)


def _bucket_ids(starts: dict[str, str], group: str) -> list[tuple[str, ...]]:
    """The buckets a fact lands in: (granularity, start) for each granularity, and the same
    with its group when it has one."""
    plain = [(granularity, start) for granularity, start in starts.items()]
    return plain + [(g, start, group) for g, start in plain] if group else list(plain)


_Time = tuple[datetime, str, dict[str, str]]  # the instant, its text, its bucket starts


def _time_of(text: str, seen: dict[str, _Time]) -> _Time:
    """A fact's time read once per distinct text: the instant, its fixed-width text and the
    starts of its hour, day and month buckets."""
    known = seen.get(text)
    if known is None:
        occurred = parse_instant(text, "at")
        known = seen[text] = (occurred, instant_text(occurred), bucket_starts(occurred))
    return known


def group_key(group: Any) -> str:
    """A group's canonical text (JSON, keys sorted); "" for none."""
    if not group:
        return ""
    return json.dumps(group, sort_keys=True, separators=(",", ":"))


def _bucket(key: dict[str, Any], bucket_id: tuple[str, ...]) -> tuple[dict[str, Any], Tables]:
    bucket = {**key, "granularity": bucket_id[0], "bucket_start": bucket_id[1]}
    if len(bucket_id) == 2:
        return bucket, PLAIN
    return {**bucket, "group_key": bucket_id[2]}, GROUPED


def _fact(
    event: EventEnvelope,
    key: dict[str, Any],
    tx: ViewTx,
    meter: Meter,
    fact: tuple[str, int, datetime],
) -> None:
    """One usage fact (id, value, time): its row, and its value folded into each bucket."""
    at = _fact_row(event, key, tx, meter, fact)
    for granularity, start in bucket_starts(fact[2]).items():
        bucket = {**key, "granularity": granularity, "bucket_start": start}
        _fold(tx, bucket, meter, fact[1], (at, event.position), PLAIN)


def _fact_row(
    event: EventEnvelope,
    key: dict[str, Any],
    tx: ViewTx,
    meter: Meter,
    fact: tuple[str, int, datetime],
    at: str | None = None,
) -> str:
    """The fact's row (what billing reads); answers its time as text (`at`, when known)."""
    fact_id, value, occurred = fact
    at = instant_text(occurred) if at is None else at
    tx.upsert(
        FACTS,
        {**key, "occurred_at": at, "event_id": fact_id},
        {"position": event.position, "value": value, "meter": meter.value},
    )
    return at


def _fold(
    tx: ViewTx,
    bucket: dict[str, Any],
    meter: Meter,
    value: int,
    order: tuple[str, int],
    tables: Tables,
) -> None:
    buckets, values, _ = tables
    if meter in _ORDER_FREE:
        delta = step(meter, 0, value, known=False, newest=True)
        tx.increment(buckets, bucket, {"quantity": delta, "events": 1})
    elif remembers_values(meter):
        known = tx.get(values, {**bucket, "value": value}) is not None
        if not known:
            tx.upsert(values, {**bucket, "value": value}, {})
        delta = step(meter, 0, value, known=known, newest=True)
        tx.increment(buckets, bucket, {"quantity": delta, "events": 1})
    else:
        row = tx.get(buckets, bucket)
        quantity = int(row["quantity"]) if row is not None else 0
        events = int(row["events"]) if row is not None else 0
        newest = meter is Meter.LATEST and _takes_latest(tx, bucket, order, tables[2])
        quantity = step(meter, quantity, value, known=False, newest=newest)
        tx.upsert(buckets, bucket, {"quantity": quantity, "events": events + 1})


def _takes_latest(tx: ViewTx, bucket: dict[str, Any], order: tuple[str, int], marks: str) -> bool:
    """Whether the event at `order` (time text, position) decides the bucket's latest;
    remembers it when it does."""
    mark = tx.get(marks, bucket)
    current = (str(mark["occurred_at"]), int(mark["position"])) if mark is not None else None
    if not is_newest(order, current):
        return False
    tx.upsert(marks, bucket, {"occurred_at": order[0], "position": order[1]})
    return True
