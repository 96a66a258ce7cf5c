"""Queries over the alerts read model.

- `alerts`: the app's alerts, oldest first, each with its thresholds and every time it
  fired (`triggered`, in log order); `tenant_id` keeps the alerts that watch that tenant
  (its own and the app-wide ones) and only that tenant's triggers; deleted alerts only with
  `include_deleted`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import orjson

from domain.errors import InvalidValue
from projections.alerts.projector import ALERTS, TRIGGERS
from projections.queries import QueryContext, query


@query("alerts")
def alerts(
    ctx: QueryContext,
    app_id: str,
    tenant_id: str | None = None,
    include_deleted: bool = False,
) -> list[dict[str, Any]]:
    _text(app_id, "app_id")
    tenant = None if tenant_id is None else _text(tenant_id, "tenant_id")
    where, params = "app_id = :app_id", dict[str, Any](app_id=app_id)
    if tenant is not None:
        where += " AND (tenant_id = :tenant_id OR tenant_id IS NULL)"
        params["tenant_id"] = tenant
    if not include_deleted:
        where += " AND deleted = :deleted"
        params["deleted"] = False
    rows = ctx.views.query(
        f"SELECT * FROM {{{ALERTS}}} WHERE {where} ORDER BY created_position", params
    )
    triggered = _triggers(ctx, app_id, tenant)
    return [_alert(row, triggered.get(str(row["alert_id"]), [])) for row in rows]


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"{field} must be a non-empty text", field=field)
    return value


def _triggers(ctx: QueryContext, app_id: str, tenant: str | None) -> dict[str, list[Any]]:
    where, params = "app_id = :app_id", {"app_id": app_id}
    if tenant is not None:
        where += " AND tenant_id = :tenant_id"
        params["tenant_id"] = tenant
    rows = ctx.views.query(f"SELECT * FROM {{{TRIGGERS}}} WHERE {where} ORDER BY position", params)
    grouped: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[str(row["alert_id"])].append(_trigger(row))
    return grouped


def _alert(row: Mapping[str, Any], triggered: list[Any]) -> dict[str, Any]:
    return {
        "alert_id": row["alert_id"],
        "alert_key": row["alert_key"],
        "kind": row["kind"],
        "tenant_id": row["tenant_id"],
        "feature_key": row["feature_key"],
        "thresholds": orjson.loads(row["thresholds"]),
        "created_at": row["created_at"],
        "deleted": bool(row["deleted"]),
        "deleted_at": row["deleted_at"],
        "triggered": triggered,
    }


def _trigger(row: Mapping[str, Any]) -> dict[str, Any]:
    start, end = row["period_start"], row["period_end"]
    return {
        "tenant_id": row["tenant_id"],
        "threshold": orjson.loads(row["threshold"]),
        "value": int(row["value"]),
        "currency": row["currency"],
        "limit": None if row["quota_limit"] is None else int(row["quota_limit"]),
        "period": {"start": start, "end": end} if start is not None or end is not None else None,
        "source_position": int(row["source_position"]),
        "source_event_id": row["source_event_id"],
        "observed_at": row["observed_at"],
        "triggered_at": row["triggered_at"],
        "event_id": row["event_id"],
        "position": int(row["position"]),
    }
