"""Queries over the usage totals read model, and its CSV and JSON export.

- `usage`: buckets of one granularity (hour, day or month; UTC, calendar) for a tenant,
  optionally one feature and a time range. `from` is rounded down to its bucket and `to` is
  exclusive: a bucket is returned when it starts at or after floor(from) and before `to`.
  Times are ISO-8601; a time without offset is read as UTC.
- `usage_current_period`: each feature's quantity in its CURRENT quota window. It is read
  from a per-quota row kept from the quota events (QuotaConfigured/Reconfigured/Consumed/
  Reset/Disabled), not from the calendar buckets, because quota windows start at the
  subscription's anchor. When the clock has passed the stored window's end and no reset
  has been recorded yet (resets happen lazily, at the next consume or billing run), the
  window containing now is reported with quantity 0.
- `usage_history`: daily buckets for the last N days (default 30) up to and including
  today by the clock, one row per feature and day, days without usage as zero rows.

Rows: {feature, granularity, bucket_start, quantity, events}. `usage_csv(rows)` renders
them as CSV (header first) and `usage_json(rows)` as a JSON array of the same rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.errors import InvalidValue
from domain.period import Interval, window_containing
from projections.queries import QueryContext, query
from projections.usage.projector import (
    BUCKETS,
    DAY,
    GRANULARITIES,
    WINDOWS,
    bucket_text,
    ceil_to,
    floor_to,
    next_bucket,
    parse_instant,
)

CSV_COLUMNS = ("feature", "granularity", "bucket_start", "quantity", "events")
MAX_HISTORY_DAYS = 3660


def required_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"{field} is required", field=field)
    return value


def optional_text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    return required_text(value, field)


def check_granularity(granularity: Any, allowed: tuple[str, ...] = GRANULARITIES) -> str:
    if granularity not in allowed:
        raise InvalidValue(
            f"granularity must be one of {', '.join(allowed)}, got {granularity!r}",
            field="granularity",
        )
    return str(granularity)


def time_range(
    params: Mapping[str, Any], to: Any, granularity: str
) -> tuple[datetime | None, datetime | None]:
    """(floor(from), ceil(to)) to the granularity; `from` comes as "from" or "from_".
    Raises InvalidValue naming from/to for a bad time or from after to."""
    raw_from = params.get("from", params.get("from_"))
    start = parse_instant(raw_from, "from") if raw_from is not None else None
    end = parse_instant(to, "to") if to is not None else None
    if start is not None and end is not None and start > end:
        raise InvalidValue("from must not be after to", field="from")
    return (
        floor_to(start, granularity) if start is not None else None,
        ceil_to(end, granularity) if end is not None else None,
    )


def reject_unknown(params: Mapping[str, Any], allowed: Iterable[str] = ("from", "from_")) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InvalidValue(f"unknown parameter {unknown[0]!r}", field=unknown[0])


def _bucket_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "feature": row["feature_key"],
        "granularity": row["granularity"],
        "bucket_start": row["bucket_start"],
        "quantity": int(row["quantity"]),
        "events": int(row["events"]),
    }


def _buckets(
    ctx: QueryContext,
    app_id: str,
    tenant_id: str,
    feature: str | None,
    granularity: str,
    start: datetime | None,
    end: datetime | None,
) -> list[dict[str, Any]]:
    where = ["app_id = :app_id", "tenant_id = :tenant_id", "granularity = :granularity"]
    values: dict[str, Any] = {"app_id": app_id, "tenant_id": tenant_id, "granularity": granularity}
    if feature is not None:
        where.append("feature_key = :feature")
        values["feature"] = feature
    if start is not None:
        where.append("bucket_start >= :range_start")
        values["range_start"] = bucket_text(start)
    if end is not None:
        where.append("bucket_start < :range_end")
        values["range_end"] = bucket_text(end)
    rows = ctx.views.query(
        "SELECT feature_key, granularity, bucket_start, quantity, events "
        f"FROM {{{BUCKETS}}} WHERE {' AND '.join(where)} ORDER BY bucket_start, feature_key",
        values,
    )
    return [_bucket_row(row) for row in rows]


@query("usage")
def usage(
    ctx: QueryContext,
    app_id: str,
    tenant_id: str,
    feature: str | None = None,
    granularity: str = DAY,
    to: str | None = None,
    **params: Any,
) -> list[dict[str, Any]]:
    """Usage buckets, oldest first: [{feature, granularity, bucket_start, quantity, events}].
    Pass the start as `from` (e.g. `**{"from": ...}`) or `from_`."""
    reject_unknown(params)
    app_id = required_text(app_id, "app_id")
    tenant_id = required_text(tenant_id, "tenant_id")
    feature = optional_text(feature, "feature")
    granularity = check_granularity(granularity)
    start, end = time_range(params, to, granularity)
    return _buckets(ctx, app_id, tenant_id, feature, granularity, start, end)


@query("usage_history")
def usage_history(
    ctx: QueryContext,
    app_id: str,
    tenant_id: str,
    feature: str | None = None,
    days: int | str = 30,
) -> list[dict[str, Any]]:
    """Daily usage for the last `days` days including today (by the clock), zero-filled:
    one row per day for each feature used in that range (or the feature asked for)."""
    app_id = required_text(app_id, "app_id")
    tenant_id = required_text(tenant_id, "tenant_id")
    feature = optional_text(feature, "feature")
    if isinstance(days, str) and days.strip().isdigit():
        days = int(days)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_HISTORY_DAYS:
        raise InvalidValue(
            f"days must be a whole number from 1 to {MAX_HISTORY_DAYS}", field="days"
        )
    end = next_bucket(floor_to(ctx.now(), DAY), DAY)
    start = end - timedelta(days=days)
    found = _buckets(ctx, app_id, tenant_id, feature, DAY, start, end)
    by_key = {(row["feature"], row["bucket_start"]): row for row in found}
    features = [feature] if feature is not None else sorted({row["feature"] for row in found})
    history: list[dict[str, Any]] = []
    for offset in range(days):
        day = bucket_text(start + timedelta(days=offset))
        for name in features:
            history.append(
                by_key.get(
                    (name, day),
                    {
                        "feature": name,
                        "granularity": DAY,
                        "bucket_start": day,
                        "quantity": 0,
                        "events": 0,
                    },
                )
            )
    return history


@query("usage_current_period")
def usage_current_period(
    ctx: QueryContext, app_id: str, tenant_id: str, feature: str | None = None
) -> list[dict[str, Any]]:
    """Each metered feature's usage in its current quota window:
    [{feature, period, window_start, window_end, quantity, events, enabled}] by feature.
    window_start/window_end are None for absolute quotas (they never reset)."""
    app_id = required_text(app_id, "app_id")
    tenant_id = required_text(tenant_id, "tenant_id")
    feature = optional_text(feature, "feature")
    where = "app_id = :app_id AND tenant_id = :tenant_id"
    values: dict[str, Any] = {"app_id": app_id, "tenant_id": tenant_id}
    if feature is not None:
        where += " AND feature_key = :feature"
        values["feature"] = feature
    rows = ctx.views.query(
        f"SELECT * FROM {{{WINDOWS}}} WHERE {where} ORDER BY feature_key", values
    )
    now = ctx.now().astimezone(UTC)
    return [_current(row, now) for row in rows]


def _current(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    start, end = row["window_start"], row["window_end"]
    quantity, events = int(row["quantity"]), int(row["events"])
    if end is not None and now >= parse_instant(end) and row["period"] != "absolute":
        anchor = parse_instant(row["anchor"])
        if now >= anchor:
            window = window_containing(anchor, Interval(row["period"]), now)
            start, end = _iso(window.start), _iso(window.end)
        quantity, events = 0, 0
    return {
        "feature": row["feature_key"],
        "period": row["period"],
        "window_start": start,
        "window_end": end,
        "quantity": quantity,
        "events": events,
        "enabled": bool(row["enabled"]),
    }


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def usage_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV of usage rows: a header line, then one line per row (columns CSV_COLUMNS)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([row[column] for column in CSV_COLUMNS])
    return out.getvalue()


def usage_json(rows: Iterable[Mapping[str, Any]]) -> str:
    """JSON export: the list of rows itself."""
    return json.dumps([dict(row) for row in rows])
