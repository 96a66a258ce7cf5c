"""Entitlement checks: one feature, many at once, or every feature of a tenant.

Every answer is `{allowed, feature, limit, used, remaining, soft_limit, reason, source,
valid_until, enforcement}` (see rules.evaluate), decided with the clock's time now, so an
expired grant or a cancel that took effect answers allowed false without waiting for an event.
A feature the tenant has nothing for answers allowed false, reason "not_in_plan" (as one that
left the plan does).

Checks read the hot cache first (rows, not answers, so expiry is still decided here), fall
back to the SQL read model on a miss or when the cache fails, and fill the cache on a miss
(unknown features too, as "missing" markers, which events invalidate like any row).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog

from domain.errors import InvalidValue
from projections.entitlements.rules import changes_after, evaluate, unknown_answer
from projections.entitlements.schema import TABLE
from projections.ports import EntitlementCache, Row, ViewReader
from projections.queries import QueryContext, query

log = structlog.get_logger(__name__)

MAX_BULK = 500
MISSING = "missing"
ANSWER = "__answer"  # (from, until, answer): the answer a row gives over [from, until)


@query("entitlement")
def entitlement(
    ctx: QueryContext, *, app_id: str, tenant_id: str, feature_key: str
) -> dict[str, Any]:
    """May this tenant use this feature now?"""
    feature_key = _text(feature_key, "feature_key")
    return _check(ctx, _text(app_id, "app_id"), _text(tenant_id, "tenant_id"), [feature_key])[0]


@query("entitlements_bulk")
def entitlements_bulk(
    ctx: QueryContext, *, app_id: str, tenant_id: str, feature_keys: Sequence[str]
) -> list[dict[str, Any]]:
    """Check many features of one tenant at once: one answer per key, in the order asked."""
    if isinstance(feature_keys, str | bytes) or not isinstance(feature_keys, Sequence):
        raise InvalidValue("feature_keys must be a list of feature keys", field="feature_keys")
    if not 1 <= len(feature_keys) <= MAX_BULK:
        raise InvalidValue(f"ask for 1 to {MAX_BULK} features at once", field="feature_keys")
    keys = [_text(key, f"feature_keys.{i}") for i, key in enumerate(feature_keys)]
    return _check(ctx, _text(app_id, "app_id"), _text(tenant_id, "tenant_id"), keys)


@query("entitlements")
def entitlements(ctx: QueryContext, *, app_id: str, tenant_id: str) -> list[dict[str, Any]]:
    """Every feature the tenant has a row for (plan, grant, or once on its plan), by key."""
    rows = ctx.views.query(
        f"SELECT * FROM {{{TABLE}}} WHERE app_id = :app_id AND tenant_id = :tenant_id "
        "ORDER BY feature_key",
        {"app_id": _text(app_id, "app_id"), "tenant_id": _text(tenant_id, "tenant_id")},
    )
    now = ctx.now()
    return [evaluate(row, now) for row in rows]


# --- cache first, read model on a miss ------------------------------------------------


def _check(
    ctx: QueryContext, app_id: str, tenant_id: str, feature_keys: list[str]
) -> list[dict[str, Any]]:
    rows: dict[str, Row] = {}
    misses: list[str] = []
    for key in dict.fromkeys(feature_keys):
        cached = _cached(ctx.cache, app_id, tenant_id, key)
        if cached is None:
            misses.append(key)
        else:
            rows[key] = cached
    if misses:
        found = _load(ctx.views, app_id, tenant_id, misses)
        fill = [found.get(key) or _missing(app_id, tenant_id, key) for key in misses]
        rows.update((row["feature_key"], row) for row in fill)
        _fill(ctx.cache, fill)
    now = ctx.now()
    return [
        unknown_answer(key) if rows[key].get(MISSING) else _evaluated(rows[key], now)
        for key in feature_keys
    ]


def _evaluated(row: Row, now: datetime) -> dict[str, Any]:
    """The row's answer at `now`, computed once for as long as it cannot change: the answer
    is kept in the row (a cached row is never written back anywhere) with the span it holds
    for, and each caller gets its own copy."""
    kept = row.get(ANSWER)
    if kept is not None and kept[0] <= now < kept[1]:
        return dict(kept[2])
    answer = evaluate(row, now)
    row[ANSWER] = (now, changes_after(row, now), answer)
    return dict(answer)


def _load(views: ViewReader, app_id: str, tenant_id: str, keys: list[str]) -> dict[str, Row]:
    names = {f"f{i}": key for i, key in enumerate(keys)}
    rows = views.query(
        f"SELECT * FROM {{{TABLE}}} WHERE app_id = :app_id AND tenant_id = :tenant_id "
        f"AND feature_key IN ({', '.join(':' + name for name in names)})",
        {"app_id": app_id, "tenant_id": tenant_id, **names},
    )
    return {row["feature_key"]: row for row in rows}


def _missing(app_id: str, tenant_id: str, feature_key: str) -> Row:
    return {"app_id": app_id, "tenant_id": tenant_id, "feature_key": feature_key, MISSING: True}


def _cached(cache: EntitlementCache | None, app_id: str, tenant_id: str, key: str) -> Row | None:
    if cache is None:
        return None
    try:
        return cache.get(app_id, tenant_id, key)
    except Exception as error:  # the read model answers instead
        log.warning("entitlement_cache_read_failed", error=repr(error))
        return None


def _fill(cache: EntitlementCache | None, rows: list[Row]) -> None:
    if cache is None:
        return
    try:
        cache.put_many(rows)
    except Exception as error:
        log.warning("entitlement_cache_fill_failed", error=repr(error))


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"{field} is required", field=field)
    return value
