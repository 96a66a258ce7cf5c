"""The entitlements read model's tables: one row per (app, tenant, feature) and one per tenant.

A feature row keeps the *inputs* of the answer, each kept current by its own events:
- plan part (subscription events): in_plan, kind, plan_limit, enforcement,
  soft_threshold_percent, subscription_id, subscription_status, cancel_at;
- quota part (Quota events, metered features): quota_enabled, quota_limit (the plan limit the
  quota counts against), allowances (JSON list of the quota's allowance grants with amount and
  expiry), used, window_end;
- grant part (TenantGrants events): granted, grant_reason, grant_actor, granted_at,
  grant_expires_at, grant_limit;
and the answer derived from them as of the last event (allowed, effective_limit, remaining,
soft_limit, source, valid_until, reason, updated_position) for SQL readers.
"""

from __future__ import annotations

from projections.base import Row
from projections.entitlements.rules import NOT_IN_PLAN

TABLE = "entitlements"
TENANTS = "entitlement_tenants"

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

NAMES = tuple(column.split()[0] for column in COLUMNS)


def blank_row(app_id: str, tenant_id: str, feature_key: str) -> Row:
    """A feature the tenant has nothing for yet (not on its plan, no grant)."""
    row: Row = dict.fromkeys(NAMES)
    row.update(app_id=app_id, tenant_id=tenant_id, feature_key=feature_key)
    row.update(in_plan=False, granted=False, allowed=False, reason=NOT_IN_PLAN)
    row["updated_position"] = 0
    return row
