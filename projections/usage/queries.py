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

- `billable_usage` (and `billable_usage_many`, for a billing run): the quantity of one
  feature under a given meter over any period [start, end) of event (clock) time, read from
  the usage facts, optionally only facts at or before a log position (the billing cut-off).
  See `billable_usage` for the answer's shape.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.catalog import Meter
from domain.errors import InvalidValue
from domain.metering import Summary
from domain.period import Interval, window_containing
from projections.queries import QueryContext, query
from projections.usage.projector import (
    BUCKETS,
    DAY,
    FACTS,
    GRANULARITIES,
    GROUP_BUCKETS,
    WINDOWS,
    bucket_text,
    ceil_to,
    floor_to,
    instant_text,
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
    found = {
        "feature": row["feature_key"],
        "granularity": row["granularity"],
        "bucket_start": row["bucket_start"],
        "quantity": int(row["quantity"]),
        "events": int(row["events"]),
    }
    if "group_key" in row:
        found["group"] = json.loads(row["group_key"])
    return found


def _buckets(
    ctx: QueryContext,
    app_id: str,
    tenant_id: str,
    feature: str | None,
    granularity: str,
    start: datetime | None,
    end: datetime | None,
    grouped: bool = False,
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
    table, group = (GROUP_BUCKETS, ", group_key") if grouped else (BUCKETS, "")
    rows = ctx.views.query(
        f"SELECT feature_key, granularity, bucket_start, quantity, events{group} "
        f"FROM {{{table}}} WHERE {' AND '.join(where)} "
        f"ORDER BY bucket_start, feature_key{group}",
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
    groups: bool = False,
    **params: Any,
) -> list[dict[str, Any]]:
    """Usage buckets, oldest first: [{feature, granularity, bucket_start, quantity, events}];
    with `groups`, one row per group of a grouped meter, each with its `group`. Pass the
    start as `from` (e.g. `**{"from": ...}`) or `from_`."""
    reject_unknown(params)
    app_id = required_text(app_id, "app_id")
    tenant_id = required_text(tenant_id, "tenant_id")
    feature = optional_text(feature, "feature")
    granularity = check_granularity(granularity)
    start, end = time_range(params, to, granularity)
    return _buckets(ctx, app_id, tenant_id, feature, granularity, start, end, groups is True)


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
    rows = list(rows)
    grouped = any("group" in row for row in rows)
    writer.writerow([*CSV_COLUMNS, "group"] if grouped else CSV_COLUMNS)
    for row in rows:
        line = [row[column] for column in CSV_COLUMNS]
        writer.writerow([*line, json.dumps(row.get("group"), sort_keys=True)] if grouped else line)
    return out.getvalue()


def usage_json(rows: Iterable[Mapping[str, Any]]) -> str:
    """JSON export: the list of rows itself."""
    return json.dumps([dict(row) for row in rows])


# --- billable usage: any period, any meter, from the facts ---------------------------------

MAX_EVENT_IDS = 100_000
REQUEST_FIELDS = ("tenant_id", "feature_key", "meter", "start", "end")
_CHUNK = 1000  # requests per statement: 5 parameters each, below SQLite's 32,766


@dataclass(frozen=True)
class UsageRequest:
    """One (tenant, feature, meter, [start, end)) asked of the facts; times as fact text."""

    tenant_id: str
    feature_key: str
    meter: Meter
    start: str
    end: str


@query("billable_usage")
def billable_usage(
    ctx: QueryContext,
    app_id: str,
    tenant_id: str,
    feature_key: str,
    meter: Meter | str,
    start: datetime | str,
    end: datetime | str,
    max_position: int | None = None,
    max_ids: int = 1000,
) -> dict[str, Any]:
    """One feature's usage under `meter` over event time [start, end), counting only facts
    at or before `max_position` when given (the billing cut-off):
    {quantity, events, first_position, last_position, first_at, last_at, event_ids}.

    `events` counts the facts in range; first/last_position are their lowest and highest log
    positions, first/last_at their earliest and latest times (fixed-width UTC text, None
    without facts). `event_ids` are the facts' event ids, oldest first (by time, then
    position), at most `max_ids`; for max and latest the deciding event comes first (max:
    the earliest event with the largest value; latest: the latest event)."""
    app_id = required_text(app_id, "app_id")
    raw = {"tenant_id": tenant_id, "feature_key": feature_key, "meter": meter}
    request = _request({**raw, "start": start, "end": end}, "")
    [answer] = _billable(ctx, app_id, [request], *_limits(max_position, max_ids))
    return answer


@query("billable_usage_many")
def billable_usage_many(
    ctx: QueryContext,
    app_id: str,
    requests: Sequence[Mapping[str, Any]],
    max_position: int | None = None,
    max_ids: int = 1000,
) -> list[dict[str, Any]]:
    """`billable_usage` for many {tenant_id, feature_key, meter, start, end} at once, answers
    in the order asked; two SQL statements per 1,000 requests (one without event ids)."""
    app_id = required_text(app_id, "app_id")
    if isinstance(requests, str | bytes | Mapping) or not isinstance(requests, Sequence):
        raise InvalidValue("requests must be a list of requests", field="requests")
    parsed = [_request(raw, f"requests.{i}.") for i, raw in enumerate(requests)]
    limits = _limits(max_position, max_ids)
    answers: list[dict[str, Any]] = []
    for offset in range(0, len(parsed), _CHUNK):
        answers.extend(_billable(ctx, app_id, parsed[offset : offset + _CHUNK], *limits))
    return answers


def _request(raw: Any, prefix: str) -> UsageRequest:
    if not isinstance(raw, Mapping):
        raise InvalidValue("a request must be an object", field=prefix.rstrip(".") or "requests")
    unknown = sorted(set(raw) - set(REQUEST_FIELDS))
    if unknown:
        raise InvalidValue(f"unknown field {unknown[0]!r}", field=prefix + unknown[0])
    start = _fact_time(raw.get("start"), prefix + "start")
    end = _fact_time(raw.get("end"), prefix + "end")
    if start > end:
        raise InvalidValue("start must not be after end", field=prefix + "start")
    return UsageRequest(
        tenant_id=required_text(raw.get("tenant_id"), prefix + "tenant_id"),
        feature_key=required_text(raw.get("feature_key"), prefix + "feature_key"),
        meter=_meter(raw.get("meter"), prefix + "meter"),
        start=start,
        end=end,
    )


def _meter(value: Any, field: str) -> Meter:
    try:
        return Meter(value)
    except ValueError:
        names = ", ".join(m.value for m in Meter)
        raise InvalidValue(f"meter must be one of {names}, got {value!r}", field=field) from None


def _fact_time(value: Any, field: str) -> str:
    """An aware datetime or an ISO-8601 text (UTC when it has no offset) as fact time text."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidValue(f"{field} must carry a timezone", field=field)
        return instant_text(value)
    return instant_text(parse_instant(value, field))


def _limits(max_position: Any, max_ids: Any) -> tuple[int | None, int]:
    if max_position is not None and not _whole(max_position, 0, 2**63 - 1):
        raise InvalidValue("max_position must be a whole number from 0", field="max_position")
    if not _whole(max_ids, 0, MAX_EVENT_IDS):
        raise InvalidValue(
            f"max_ids must be a whole number from 0 to {MAX_EVENT_IDS}", field="max_ids"
        )
    return max_position, max_ids


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _billable(
    ctx: QueryContext,
    app_id: str,
    requests: Sequence[UsageRequest],
    max_position: int | None,
    max_ids: int,
) -> list[dict[str, Any]]:
    """Answers for up to one chunk of requests: one figures statement, and one for the
    event ids unless none are asked for."""
    values, params = _request_values(requests)
    params.update(app_id=app_id, max_ids=max_ids, max_position=max_position)
    cte = f"WITH req (i, tenant_id, feature_key, meter, start_at, end_at) AS (VALUES {values})"
    cut_off = max_position is not None
    totals = {int(r["i"]): r for r in ctx.views.query(_totals_sql(cte, cut_off), params)}
    ids: dict[int, list[str]] = {}
    if max_ids > 0:
        for row in ctx.views.query(_ids_sql(cte, cut_off), params):
            ids.setdefault(int(row["i"]), []).append(str(row["event_id"]))
    return [
        _answer(request, totals.get(i), ids.get(i, []), max_ids)
        for i, request in enumerate(requests)
    ]


def _request_values(requests: Sequence[UsageRequest]) -> tuple[str, dict[str, Any]]:
    """The VALUES rows of the request table (the index inlined, the rest as parameters)."""
    rows: list[str] = []
    params: dict[str, Any] = {}
    for i, request in enumerate(requests):
        rows.append(f"({i}, :t{i}, :f{i}, :m{i}, :s{i}, :e{i})")
        params.update(
            {
                f"t{i}": request.tenant_id,
                f"f{i}": request.feature_key,
                f"m{i}": request.meter.value,
                f"s{i}": request.start,
                f"e{i}": request.end,
            }
        )
    return ", ".join(rows), params


def _facts_of_request(alias: str, cut_off: bool) -> str:
    """The facts (as `alias`) a request covers: its tenant, feature and period, and the
    cut-off when there is one. The fact key's index serves it."""
    match = (
        f"{alias}.app_id = :app_id AND {alias}.tenant_id = req.tenant_id "
        f"AND {alias}.feature_key = req.feature_key "
        f"AND {alias}.occurred_at >= req.start_at AND {alias}.occurred_at < req.end_at"
    )
    return match + (f" AND {alias}.position <= :max_position" if cut_off else "")


def _deciding(column: str, meter: Meter, order: str, cut_off: bool) -> str:
    """The `column` of the fact that decides a max or latest quantity (NULL otherwise)."""
    return (
        f"(SELECT d.{column} FROM {{{FACTS}}} d WHERE req.meter = '{meter.value}' "
        f"AND {_facts_of_request('d', cut_off)} ORDER BY {order} LIMIT 1)"
    )


def _totals_sql(cte: str, cut_off: bool) -> str:
    """Per request, the figures of domain.metering.Summary and the deciding events."""
    latest = "d.occurred_at DESC, d.position DESC"
    largest = "d.value DESC, d.occurred_at, d.position"  # the first event to reach the max
    return (
        f"{cte} SELECT req.i AS i, COUNT(*) AS events, SUM(f.value) AS total, "
        "MAX(f.value) AS largest, COUNT(DISTINCT f.value) AS distinct_values, "
        "MIN(f.position) AS first_position, MAX(f.position) AS last_position, "
        "MIN(f.occurred_at) AS first_at, MAX(f.occurred_at) AS last_at, "
        f"{_deciding('value', Meter.LATEST, latest, cut_off)} AS latest_value, "
        f"{_deciding('event_id', Meter.LATEST, latest, cut_off)} AS latest_id, "
        f"{_deciding('event_id', Meter.MAX, largest, cut_off)} AS largest_id "
        f"FROM req JOIN {{{FACTS}}} f ON {_facts_of_request('f', cut_off)} "
        "GROUP BY req.i, req.tenant_id, req.feature_key, req.meter, req.start_at, req.end_at"
    )


def _ids_sql(cte: str, cut_off: bool) -> str:
    """Per request, the event ids of its oldest `max_ids` facts (by time, then position)."""
    return (
        f"{cte}, ranked AS (SELECT req.i AS i, f.event_id AS event_id, ROW_NUMBER() OVER "
        "(PARTITION BY req.i ORDER BY f.occurred_at, f.position) AS oldest "
        f"FROM req JOIN {{{FACTS}}} f ON {_facts_of_request('f', cut_off)}) "
        "SELECT i, event_id FROM ranked WHERE oldest <= :max_ids ORDER BY i, oldest"
    )


def _answer(
    request: UsageRequest,
    totals: Mapping[str, Any] | None,
    oldest_ids: list[str],
    max_ids: int,
) -> dict[str, Any]:
    if totals is None:
        return {
            "quantity": 0,
            "events": 0,
            "first_position": None,
            "last_position": None,
            "first_at": None,
            "last_at": None,
            "event_ids": [],
        }
    summary = Summary(
        total=int(totals["total"]),
        events=int(totals["events"]),
        largest=int(totals["largest"]),
        distinct=int(totals["distinct_values"]),
        latest=_optional_int(totals, "latest_value"),
    )
    deciding = totals["latest_id"] or totals["largest_id"]
    first = [str(deciding)] if deciding is not None else []
    rest = [event_id for event_id in oldest_ids if event_id not in first]
    return {
        "quantity": summary.quantity(request.meter),
        "events": summary.events,
        "first_position": int(totals["first_position"]),
        "last_position": int(totals["last_position"]),
        "first_at": str(totals["first_at"]),
        "last_at": str(totals["last_at"]),
        "event_ids": [*first, *rest][:max_ids],
    }


def _optional_int(row: Mapping[str, Any], column: str) -> int | None:
    return int(row[column]) if row[column] is not None else None
