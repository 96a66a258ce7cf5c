"""The rule that turns an entitlement row into an answer, at the clock's time.

Queries re-derive the answer when asked (`evaluate`), so expiry is decided then: a grant or
allowance that expired, a scheduled cancel that took effect, or a quota window that ended
(usage starts over, as the next consume would reset it) all show without an event. The
statuses, limits and thresholds are the domain's rules (domain/subscription.py,
domain/catalog.py); this module only combines them for a row.

- Plan: a feature of the subscription's current plan is allowed while the subscription is live
  (trialing, active or past_due); paused, canceled or expired answer reason
  `subscription_<status>`; a scheduled cancel answers `subscription_canceled` from its instant.
  A metered feature with a hard quota at its effective limit answers `hard_limit_reached`; a
  soft one stays allowed past it (overage). Features that left the plan stay as rows with reason
  `not_in_plan` (usage kept for the record); a feature the tenant never had answers the same
  `not_in_plan` (one reason for one case, whether a row exists or not).
- Grant: a live manual grant allows the feature (source "grant", valid until its expiry) over
  `not_in_plan` and the subscription's status, for any feature. Its `limit`, when it has one,
  governs the check: on a metered feature an active quota counts, it replaces the plan's limit
  (the quota's live allowance grants still add to it) and a hard quota is reached at it;
  elsewhere (boolean, seats, a feature not on the plan) it is the limit reported. A grant
  without a limit does not lift a hard quota (`grant_allowance` on the quota does, which
  consumes enforce). Revoked or expired, the plan's answer applies again (an expired grant on
  a feature not on the plan answers `grant_expired`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from domain.catalog import (
    DEFAULT_SOFT_THRESHOLD_PERCENT,
    FeatureKind,
    hard_limit_reached,
    soft_threshold_units,
)
from domain.metering import percent_used
from domain.subscription import LIVE

# reasons an answer is not allowed
NOT_IN_PLAN = "not_in_plan"
HARD_LIMIT_REACHED = "hard_limit_reached"
GRANT_EXPIRED = "grant_expired"
NO_SUBSCRIPTION = "no_subscription"

FOREVER = datetime.max.replace(tzinfo=UTC)


def unknown_answer(feature_key: str) -> dict[str, Any]:
    """The answer for a feature the tenant has no row for: not an error, just not allowed,
    with the reason of a feature that left the plan (no plan of the tenant has it)."""
    return _answer(feature_key, allowed=False, reason=NOT_IN_PLAN)


def evaluate(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The entitlement answer for one row at `now`:
    {allowed, feature, limit, used, remaining, soft_limit, reason, source, valid_until,
    enforcement}. `limit` is the effective limit (None = unlimited or not counted);
    `soft_limit` the soft warning threshold in units (soft quotas only)."""
    feature = str(row["feature_key"])
    in_plan = _flag(row.get("in_plan"))
    quota_active = _flag(row.get("quota_enabled")) and in_plan
    used = _used(row, now, in_plan)
    limit, enforcement = _plan_terms(row, now, in_plan, quota_active)
    granted = _flag(row.get("granted"))
    grant_expires_at = row.get("grant_expires_at")
    soft_percent = row.get("soft_threshold_percent")
    if granted and (grant_expires_at is None or now < required_instant(grant_expires_at)):
        limit, enforcement = _under_grant(row, now, quota_active, limit, enforcement)
        reached = quota_active and hard_limit_reached(enforcement, limit, used)
        return _answer(
            feature,
            allowed=not reached,
            reason=HARD_LIMIT_REACHED if reached else None,
            source="grant",
            valid_until=grant_expires_at,
            limit=limit,
            used=used,
            enforcement=enforcement,
            soft_percent=soft_percent,
        )
    reason = _plan_reason(row, now, in_plan, hard_limit_reached(enforcement, limit, used))
    if granted and reason == NOT_IN_PLAN:  # the grant expired and the plan has nothing
        return _answer(
            feature,
            allowed=False,
            reason=GRANT_EXPIRED,
            source="grant",
            valid_until=grant_expires_at,
            used=used,
        )
    return _answer(
        feature,
        allowed=reason is None,
        reason=reason,
        source="plan" if in_plan else None,
        valid_until=row.get("cancel_at") if in_plan else None,
        limit=limit,
        used=used,
        enforcement=enforcement,
        soft_percent=soft_percent,
    )


def _used(row: Mapping[str, Any], now: datetime, in_plan: bool) -> int | None:
    """What the quota counted in its current window (0 once the window is over: the next
    consume starts a new one); None for a feature no quota counts."""
    if row.get("quota_enabled") is None:
        return 0 if in_plan and row.get("kind") == FeatureKind.METERED else None
    window_end = _instant(row.get("window_end"))
    if window_end is not None and now >= window_end:
        return 0
    return int(row.get("used") or 0)


def _plan_terms(
    row: Mapping[str, Any], now: datetime, in_plan: bool, quota_active: bool
) -> tuple[int | None, str | None]:
    """(limit, enforcement) by the plan: the quota's when one counts, else the plan's."""
    if quota_active:
        return _quota_limit(row, now), row.get("enforcement")
    if in_plan:
        return row.get("plan_limit"), row.get("enforcement")
    return None, None


def _plan_reason(
    row: Mapping[str, Any], now: datetime, in_plan: bool, hard_reached: bool
) -> str | None:
    """Why the plan does not allow the feature now (None: it does)."""
    status, cancel_at = row.get("subscription_status"), row.get("cancel_at")
    if not in_plan:
        return NOT_IN_PLAN
    if status is None:
        return NO_SUBSCRIPTION
    if status not in LIVE:
        return f"subscription_{status}"
    if cancel_at is not None and now >= required_instant(cancel_at):
        return "subscription_canceled"
    return HARD_LIMIT_REACHED if hard_reached else None


def changes_after(row: Mapping[str, Any], now: datetime) -> datetime:
    """The first instant after `now` at which `evaluate(row, ·)` may answer differently: the
    answer is constant in between (a window ending, a cancel taking effect, a grant or an
    allowance expiring are its only breakpoints)."""
    instants = [
        _instant(row.get(column)) for column in ("window_end", "cancel_at", "grant_expires_at")
    ]
    raw = row.get("allowances")
    if raw and raw != "[]":
        instants += [expires_at for _, expires_at in _allowance_terms(str(raw))]
    return min((i for i in instants if i is not None and i > now), default=FOREVER)


def _answer(
    feature: str,
    *,
    allowed: bool,
    reason: str | None = None,
    source: str | None = None,
    valid_until: str | None = None,
    limit: int | None = None,
    used: int | None = None,
    enforcement: str | None = None,
    soft_percent: int | None = None,
) -> dict[str, Any]:
    remaining = None if limit is None or used is None else max(limit - used, 0)
    percent = DEFAULT_SOFT_THRESHOLD_PERCENT if soft_percent is None else int(soft_percent)
    soft_limit = soft_threshold_units(limit, enforcement, percent)
    return {
        "allowed": allowed,
        "feature": feature,
        "limit": limit,
        "used": used,
        "remaining": remaining,
        "percent_used": percent_used(used, limit),
        "soft_limit": soft_limit,
        "reason": reason,
        "source": source,
        "valid_until": valid_until,
        "enforcement": enforcement,
    }


def _under_grant(
    row: Mapping[str, Any],
    now: datetime,
    quota_active: bool,
    limit: int | None,
    enforcement: str | None,
) -> tuple[int | None, str | None]:
    """(limit, enforcement) while a live grant holds: its own limit governs (on a quota's
    feature, plus the quota's live allowances, enforced as the quota is); without one, the
    quota's terms stay, and a feature no quota counts has no limit."""
    grant_limit = row.get("grant_limit")
    if grant_limit is None:
        return (limit, enforcement) if quota_active else (None, None)
    if quota_active:
        return int(grant_limit) + _allowance_units(row, now), enforcement
    return int(grant_limit), None


def _quota_limit(row: Mapping[str, Any], now: datetime) -> int | None:
    """The quota's plan limit plus its allowance grants still active at `now`."""
    base = row.get("quota_limit")
    if base is None:
        return None
    return int(base) + _allowance_units(row, now)


def _allowance_units(row: Mapping[str, Any], now: datetime) -> int:
    """The units of the quota's allowance grants still active at `now`."""
    raw = row.get("allowances")
    if not raw or raw == "[]":
        return 0
    return sum(
        amount
        for amount, expires_at in _allowance_terms(str(raw))
        if expires_at is None or expires_at > now
    )


@lru_cache(maxsize=4096)
def _allowance_terms(raw: str) -> tuple[tuple[int, datetime | None], ...]:
    """(amount, expiry) of each allowance in a row's JSON list (parsed once per value)."""
    loaded: list[dict[str, Any]] = orjson.loads(raw)
    return tuple((int(a["amount"]), _instant(a.get("expires_at"))) for a in loaded)


def allowances(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = row.get("allowances")
    if not raw:
        return []
    loaded: list[dict[str, Any]] = orjson.loads(raw)
    return loaded


def _flag(value: Any) -> bool:
    """BOOLEAN columns read back as bool (PostgreSQL) or 0/1 (SQLite)."""
    return bool(value) if value is not None else False


def _instant(text: Any) -> datetime | None:
    if text is None:
        return None
    if isinstance(text, datetime):
        return text if text.tzinfo is not None else text.replace(tzinfo=UTC)
    return _parsed(str(text))


@lru_cache(maxsize=65536)
def _parsed(text: str) -> datetime:
    """An ISO instant as stored in a row (UTC when it names no offset), parsed once."""
    instant = datetime.fromisoformat(text)
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def required_instant(text: Any) -> datetime:
    instant = _instant(text)
    assert instant is not None
    return instant
