"""The entitlements read model: one row per (app, tenant, feature), built from subscription,
quota and feature-grant events, and the rule that turns a row into an answer.

A row keeps the *inputs* of the answer, each kept current by its own events:
- plan part (subscription events): in_plan, kind, plan_limit, enforcement,
  soft_threshold_percent, subscription_id, subscription_status, cancel_at;
- quota part (Quota events, metered features): quota_enabled, quota_limit (the plan limit the
  quota counts against), allowances (JSON list of the quota's allowance grants with amount and
  expiry), used, window_end;
- grant part (TenantGrants events): granted, grant_reason, grant_actor, granted_at,
  grant_expires_at, grant_limit.
and the answer derived from them as of the last event (allowed, effective_limit, remaining,
soft_limit, source, valid_until, reason, updated_position) for SQL readers. Queries re-derive
the answer with the clock's time (`evaluate`), so expiry is decided when asked: a grant or
allowance that expired, a scheduled cancel that took effect, or a quota window that ended
(usage starts over, as the next consume would reset it) all show without an event.

Rules (`evaluate`):
- Plan: a feature of the subscription's current plan is allowed while the subscription is
  trialing, active or past_due; paused, canceled or expired answer reason
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

Projectors never load aggregates: this one reads only event data and its own rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
import structlog

from domain.entitlement_grant import FeatureGranted, FeatureGrantRevoked
from domain.metering import percent_used
from domain.quota import (
    AllowanceGranted,
    GrantRevoked,
    QuotaConfigured,
    QuotaConsumed,
    QuotaDisabled,
    QuotaExceeded,
    QuotaReconfigured,
    QuotaReset,
    SoftLimitReached,
    UsageRecorded,
)
from domain.subscription import (
    CancellationScheduled,
    CancellationUndone,
    MarkedPastDue,
    PaymentRecovered,
    PlanChanged,
    SubscriptionCanceled,
    SubscriptionExpired,
    SubscriptionPaused,
    SubscriptionRenewed,
    SubscriptionResumed,
    SubscriptionStarted,
    TrialEnded,
)
from projections.base import Projector, Row, ViewTx
from projections.envelope import EventEnvelope
from projections.ports import EntitlementCache

log = structlog.get_logger(__name__)

RowChange = Callable[[Row, EventEnvelope], None]


TABLE = "entitlements"
TENANTS = "entitlement_tenants"

ALLOWED_STATUSES = frozenset({"trialing", "active", "past_due"})

# reasons an answer is not allowed
NOT_IN_PLAN = "not_in_plan"
HARD_LIMIT_REACHED = "hard_limit_reached"
GRANT_EXPIRED = "grant_expired"
NO_SUBSCRIPTION = "no_subscription"

COLUMNS = (
    "app_id TEXT NOT NULL",
    "tenant_id TEXT NOT NULL",
    "feature_key TEXT NOT NULL",
    # plan part
    "kind TEXT",
    "in_plan BOOLEAN NOT NULL",
    "plan_limit BIGINT",
    "enforcement TEXT",
    "soft_threshold_percent BIGINT",
    "subscription_id TEXT",
    "subscription_status TEXT",
    "cancel_at TEXT",
    # quota part
    "quota_enabled BOOLEAN",
    "quota_limit BIGINT",
    "allowances TEXT",
    "used BIGINT",
    "window_end TEXT",
    # grant part
    "granted BOOLEAN NOT NULL",
    "grant_reason TEXT",
    "grant_actor TEXT",
    "granted_at TEXT",
    "grant_expires_at TEXT",
    "grant_limit BIGINT",
    # the answer as of the last event
    "allowed BOOLEAN NOT NULL",
    "effective_limit BIGINT",
    "remaining BIGINT",
    "soft_limit BIGINT",
    "source TEXT",
    "valid_until TEXT",
    "reason TEXT",
    "updated_position BIGINT NOT NULL",
)
KEY = ("app_id", "tenant_id", "feature_key")
TENANT_COLUMNS = (
    "app_id TEXT NOT NULL",
    "tenant_id TEXT NOT NULL",
    "subscription_id TEXT",
    "subscription_status TEXT",
    "cancel_at TEXT",
    "updated_position BIGINT NOT NULL",
)
TENANT_KEY = ("app_id", "tenant_id")
SUBSCRIPTION_COLUMNS = ("subscription_id", "subscription_status", "cancel_at")

SUBSCRIPTION_TERMS = frozenset(
    {SubscriptionStarted.NAME, PlanChanged.NAME, SubscriptionRenewed.NAME}
)
SUBSCRIPTION_STATUS: dict[str, str] = {
    TrialEnded.NAME: "active",
    SubscriptionCanceled.NAME: "canceled",
    SubscriptionPaused.NAME: "paused",
    SubscriptionResumed.NAME: "active",
    MarkedPastDue.NAME: "past_due",
    PaymentRecovered.NAME: "active",
    SubscriptionExpired.NAME: "expired",
}
SUBSCRIPTION_EVENTS = (
    SUBSCRIPTION_TERMS
    | frozenset(SUBSCRIPTION_STATUS)
    | {CancellationScheduled.NAME, CancellationUndone.NAME}
)
QUOTA_EVENTS = frozenset(
    {
        QuotaConfigured.NAME,
        QuotaReconfigured.NAME,
        QuotaDisabled.NAME,
        QuotaConsumed.NAME,
        UsageRecorded.NAME,
        QuotaExceeded.NAME,
        SoftLimitReached.NAME,
        AllowanceGranted.NAME,
        GrantRevoked.NAME,
        QuotaReset.NAME,
    }
)
GRANT_EVENTS = frozenset({FeatureGranted.NAME, FeatureGrantRevoked.NAME})


class EntitlementsProjector(Projector):
    """Keeps the entitlement rows; after each commit, invalidates the touched tenants' (or
    features') entries in the hot cache. A cache error is logged, never raised: the read model
    is the truth and readers fall back to it."""

    NAME: ClassVar[str] = "entitlements"
    TABLES: ClassVar[dict[str, tuple[Sequence[str], Sequence[str]]]] = {
        TABLE: (COLUMNS, KEY),
        TENANTS: (TENANT_COLUMNS, TENANT_KEY),
    }
    HANDLES: ClassVar[frozenset[str]] = SUBSCRIPTION_EVENTS | QUOTA_EVENTS | GRANT_EVENTS

    def __init__(self, cache: EntitlementCache | None = None) -> None:
        self.cache = cache

    # --- events -> rows ---------------------------------------------------------------

    def apply(self, event: EventEnvelope, tx: ViewTx) -> None:
        if event.tenant_id is None:
            return
        if event.type in SUBSCRIPTION_EVENTS:
            self._subscription(event, tx)
        elif event.type in QUOTA_EVENTS:
            self._feature(event, tx, _quota_change)
        elif event.type in GRANT_EVENTS:
            self._feature(event, tx, _grant_change)

    def _subscription(self, event: EventEnvelope, tx: ViewTx) -> None:
        app_id, tenant_id, data = event.app_id, str(event.tenant_id), event.data
        tenant_key = {"app_id": app_id, "tenant_id": tenant_id}
        sub_id = str(event.aggregate_id)
        tenant = tx.get(TENANTS, tenant_key)
        if event.type == SubscriptionStarted.NAME:
            tenant = {"subscription_id": sub_id, "subscription_status": data["status"]}
            tenant["cancel_at"] = None
        elif tenant is None:  # its start was never seen (a partial stream): adopt it
            tenant = {"subscription_id": sub_id, "subscription_status": "active", "cancel_at": None}
        elif tenant["subscription_id"] != sub_id:
            return  # not the tenant's current subscription
        else:
            tenant = {k: tenant[k] for k in SUBSCRIPTION_COLUMNS}
        if event.type in SUBSCRIPTION_STATUS:
            tenant["subscription_status"] = SUBSCRIPTION_STATUS[event.type]
            if event.type == SubscriptionCanceled.NAME:
                tenant["cancel_at"] = None
        elif event.type == CancellationScheduled.NAME:
            tenant["cancel_at"] = data["cancel_at"]
        elif event.type == CancellationUndone.NAME:
            tenant["cancel_at"] = None
        tx.upsert(TENANTS, tenant_key, {**tenant, "updated_position": event.position})

        features: dict[str, dict[str, Any]] | None = None
        if event.type in SUBSCRIPTION_TERMS:
            terms = data["to_terms"] if event.type == PlanChanged.NAME else data["terms"]
            features = {f["key"]: f for f in terms["features"]}
        rows = {row["feature_key"]: dict(row) for row in tx.select(TABLE, tenant_key)}
        keys = set(rows) | set(features or ())
        now = _required_instant(event.occurred_at)
        for key in sorted(keys):
            row = rows.get(key) or blank_row(app_id, tenant_id, key)
            row.update(tenant)
            if features is not None:
                _set_plan_feature(row, features.get(key))
            _save(tx, row, event, now)

    def prefetch(self, events: Sequence[EventEnvelope], tx: ViewTx) -> None:
        """The feature rows (and their tenants) the batch's quota and grant events read."""
        features = [e for e in events if e.type in QUOTA_EVENTS or e.type in GRANT_EVENTS]
        if not features:
            return
        tx.prefetch(TABLE, [_feature_key(e) for e in features])
        tenants = {(e.app_id, str(e.tenant_id)) for e in features}
        tx.prefetch(TENANTS, [{"app_id": a, "tenant_id": t} for a, t in sorted(tenants)])

    def _feature(self, event: EventEnvelope, tx: ViewTx, change: RowChange) -> None:
        app_id, tenant_id = event.app_id, str(event.tenant_id)
        key = _feature_key(event)
        found = tx.get(TABLE, key)
        if found is None:
            row = blank_row(app_id, tenant_id, key["feature_key"])
            tenant = tx.get(TENANTS, {"app_id": app_id, "tenant_id": tenant_id})
            if tenant is not None:
                for column in SUBSCRIPTION_COLUMNS:
                    row[column] = tenant[column]
        else:
            row = dict(found)
        change(row, event)
        _save(tx, row, event, _required_instant(event.occurred_at))

    # --- the hot cache ---------------------------------------------------------------

    def after_commit(self, events: Sequence[EventEnvelope]) -> None:
        """Invalidate what the committed events changed: a subscription event touches every
        feature of its tenant, a quota or grant event one feature."""
        if self.cache is None:
            return
        tenants: set[tuple[str, str]] = set()
        features: set[tuple[str, str, str]] = set()
        for event in events:
            if event.tenant_id is None:
                continue
            if event.type in SUBSCRIPTION_EVENTS:
                tenants.add((event.app_id, event.tenant_id))
            else:
                features.add((event.app_id, event.tenant_id, str(event.data["feature_key"])))
        targets: list[tuple[str, str, str | None]] = [(a, t, None) for a, t in sorted(tenants)]
        targets += [(a, t, f) for a, t, f in sorted(features) if (a, t) not in tenants]
        for app_id, tenant_id, feature_key in targets:
            try:
                self.cache.invalidate(app_id, tenant_id, feature_key)
            except Exception as error:  # the read model is the truth; readers fall back
                log.warning(
                    "entitlement_cache_invalidate_failed",
                    app_id=app_id,
                    tenant_id=tenant_id,
                    feature_key=feature_key,
                    error=repr(error),
                )

    def after_rebuild(self) -> None:
        """A replay swapped in a rebuilt model: nothing cached from the old one may answer."""
        if self.cache is None:
            return
        try:
            self.cache.invalidate_all()
        except Exception as error:
            log.warning("entitlement_cache_invalidate_all_failed", error=repr(error))


# --- row changes ------------------------------------------------------------------------


def blank_row(app_id: str, tenant_id: str, feature_key: str) -> Row:
    """A feature the tenant has nothing for yet (not on its plan, no grant)."""
    return {
        "app_id": app_id,
        "tenant_id": tenant_id,
        "feature_key": feature_key,
        "kind": None,
        "in_plan": False,
        "plan_limit": None,
        "enforcement": None,
        "soft_threshold_percent": None,
        "subscription_id": None,
        "subscription_status": None,
        "cancel_at": None,
        "quota_enabled": None,
        "quota_limit": None,
        "allowances": None,
        "used": None,
        "window_end": None,
        "granted": False,
        "grant_reason": None,
        "grant_actor": None,
        "granted_at": None,
        "grant_expires_at": None,
        "grant_limit": None,
        "allowed": False,
        "effective_limit": None,
        "remaining": None,
        "soft_limit": None,
        "source": None,
        "valid_until": None,
        "reason": NOT_IN_PLAN,
        "updated_position": 0,
    }


def _set_plan_feature(row: Row, spec: Mapping[str, Any] | None) -> None:
    if spec is None:
        row["in_plan"] = False
        return
    row["in_plan"] = True
    row["kind"] = spec["kind"]
    row["plan_limit"] = spec.get("limit")
    if spec["kind"] == "metered":
        row["enforcement"] = spec.get("enforcement", "hard")
        row["soft_threshold_percent"] = spec.get("soft_threshold_percent", 80)
    else:
        row["enforcement"] = None
        row["soft_threshold_percent"] = None


def _feature_key(event: EventEnvelope) -> dict[str, Any]:
    return {
        "app_id": event.app_id,
        "tenant_id": str(event.tenant_id),
        "feature_key": event.data["feature_key"],
    }


def _quota_change(row: Row, event: EventEnvelope) -> None:
    data, kind = event.data, event.type
    if "used" in data:
        row["used"] = data["used"]
    if "window" in data:
        row["window_end"] = data["window"]["end"] if data["window"] else None
    if kind in (QuotaConfigured.NAME, QuotaReconfigured.NAME):
        row["quota_enabled"] = True
        row["quota_limit"] = data["limit"]
        row["enforcement"] = data["enforcement"]
        row["soft_threshold_percent"] = data["soft_threshold_percent"]
        if kind == QuotaConfigured.NAME:
            row["used"] = 0
            row["allowances"] = "[]"
    elif kind == QuotaDisabled.NAME:
        row["quota_enabled"] = False
    elif kind == AllowanceGranted.NAME:
        allowances = [a for a in _allowances(row) if a["grant_id"] != data["grant_id"]]
        allowances.append(
            {
                "grant_id": data["grant_id"],
                "amount": data["amount"],
                "expires_at": data.get("expires_at"),
            }
        )
        row["allowances"] = _dump(allowances)
    elif kind == GrantRevoked.NAME:
        row["allowances"] = _dump(
            [a for a in _allowances(row) if a["grant_id"] != data["grant_id"]]
        )
    elif kind == QuotaReset.NAME:
        expired = set(data.get("expired_grants") or ())
        row["allowances"] = _dump([a for a in _allowances(row) if a["grant_id"] not in expired])
        row["quota_limit"] = data["limit"]
        row["used"] = 0
    if row["quota_enabled"] is None:  # its QuotaConfigured was never seen (a partial stream)
        row["quota_enabled"] = True


def _grant_change(row: Row, event: EventEnvelope) -> None:
    data = event.data
    if event.type == FeatureGranted.NAME:
        row["granted"] = True
        row["grant_reason"] = data["reason"]
        row["grant_actor"] = event.actor
        row["granted_at"] = event.occurred_at
        row["grant_expires_at"] = data.get("expires_at")
        row["grant_limit"] = data.get("limit")
    else:
        row["granted"] = False
        for column in ("grant_reason", "grant_actor", "granted_at", "grant_expires_at"):
            row[column] = None
        row["grant_limit"] = None


def _save(tx: ViewTx, row: Row, event: EventEnvelope, now: datetime) -> None:
    answer = evaluate(row, now)
    row.update(
        allowed=answer["allowed"],
        effective_limit=answer["limit"],
        remaining=answer["remaining"],
        soft_limit=answer["soft_limit"],
        source=answer["source"],
        valid_until=answer["valid_until"],
        reason=answer["reason"],
        updated_position=event.position,
    )
    key = {k: row[k] for k in KEY}
    tx.upsert(TABLE, key, {k: v for k, v in row.items() if k not in KEY})


# --- rows -> answers --------------------------------------------------------------------


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
    quota_known = row.get("quota_enabled") is not None
    quota_active = _flag(row.get("quota_enabled")) and in_plan

    used: int | None = None
    if quota_known:
        used = int(row.get("used") or 0)
        window_end = _instant(row.get("window_end"))
        if window_end is not None and now >= window_end:
            used = 0  # the window is over: the next consume starts a new one
    elif in_plan and row.get("kind") == "metered":
        used = 0

    if quota_active:
        limit = _quota_limit(row, now)
        enforcement = row.get("enforcement")
    elif in_plan:
        limit = row.get("plan_limit")
        enforcement = row.get("enforcement")
    else:
        limit, enforcement = None, None
    hard_reached = _hard_reached(enforcement, limit, used)

    # the plan's answer
    status = row.get("subscription_status")
    cancel_at = row.get("cancel_at")
    plan_reason: str | None = None
    if not in_plan:
        plan_reason = NOT_IN_PLAN
    elif status is None:
        plan_reason = NO_SUBSCRIPTION
    elif status not in ALLOWED_STATUSES:
        plan_reason = f"subscription_{status}"
    elif cancel_at is not None and now >= _required_instant(cancel_at):
        plan_reason = "subscription_canceled"
    elif hard_reached:
        plan_reason = HARD_LIMIT_REACHED

    # a live manual grant overrides access (not a hard quota)
    granted = _flag(row.get("granted"))
    grant_expires_at = row.get("grant_expires_at")
    grant_live = granted and (grant_expires_at is None or now < _required_instant(grant_expires_at))
    if grant_live:
        limit, enforcement = _under_grant(row, now, quota_active, limit, enforcement)
        hard_reached = _hard_reached(enforcement, limit, used)
        return _answer(
            feature,
            allowed=not (quota_active and hard_reached),
            reason=HARD_LIMIT_REACHED if quota_active and hard_reached else None,
            source="grant",
            valid_until=grant_expires_at,
            limit=limit,
            used=used,
            enforcement=enforcement,
            soft_percent=row.get("soft_threshold_percent"),
        )
    if granted and plan_reason == NOT_IN_PLAN:  # the grant expired and the plan has nothing
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
        allowed=plan_reason is None,
        reason=plan_reason,
        source="plan" if in_plan else None,
        valid_until=cancel_at if in_plan else None,
        limit=limit,
        used=used,
        enforcement=enforcement,
        soft_percent=row.get("soft_threshold_percent"),
    )


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
    soft_limit = None
    if enforcement == "soft" and limit is not None:
        soft_limit = -(-limit * int(soft_percent or 80) // 100)  # ceiling, whole units
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


def _hard_reached(enforcement: str | None, limit: int | None, used: int | None) -> bool:
    return enforcement == "hard" and limit is not None and used is not None and used >= limit


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
    extra = 0
    for allowance in _allowances(row):
        expires_at = _instant(allowance.get("expires_at"))
        if expires_at is None or expires_at > now:
            extra += int(allowance["amount"])
    return extra


def _allowances(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = row.get("allowances")
    if not raw:
        return []
    loaded: list[dict[str, Any]] = orjson.loads(raw)
    return loaded


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


def _flag(value: Any) -> bool:
    """BOOLEAN columns read back as bool (PostgreSQL) or 0/1 (SQLite)."""
    return bool(value) if value is not None else False


def _instant(text: Any) -> datetime | None:
    if text is None:
        return None
    instant = text if isinstance(text, datetime) else datetime.fromisoformat(str(text))
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant


def _required_instant(text: Any) -> datetime:
    instant = _instant(text)
    assert instant is not None
    return instant
