"""How each event changes an entitlement row's inputs (plan, quota and grant parts)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from domain.catalog import DEFAULT_SOFT_THRESHOLD_PERCENT, Enforcement
from domain.entitlement_grant import FeatureGranted
from domain.quota import (
    AllowanceGranted,
    GrantRevoked,
    QuotaConfigured,
    QuotaDisabled,
    QuotaReconfigured,
    QuotaReset,
)
from domain.subscription import (
    CancellationScheduled,
    CancellationUndone,
    PlanChanged,
    Status,
    SubscriptionCanceled,
    SubscriptionStarted,
)
from projections.base import Row
from projections.entitlements.routing import SUBSCRIPTION_STATUS, SUBSCRIPTION_TERMS
from projections.entitlements.rules import allowances
from projections.entitlements.schema import SUBSCRIPTION_COLUMNS
from projections.envelope import EventEnvelope


def set_plan_feature(row: Row, spec: Mapping[str, Any] | None) -> None:
    if spec is None:
        row["in_plan"] = False
        return
    row["in_plan"] = True
    row["kind"] = spec["kind"]
    row["plan_limit"] = spec.get("limit")
    if spec["kind"] == "metered":
        row["enforcement"] = spec.get("enforcement", Enforcement.HARD.value)
        row["soft_threshold_percent"] = spec.get(
            "soft_threshold_percent", DEFAULT_SOFT_THRESHOLD_PERCENT
        )
    else:
        row["enforcement"] = None
        row["soft_threshold_percent"] = None


def tenant_change(tenant: Row | None, event: EventEnvelope) -> Row | None:
    """The tenant's subscription columns after a subscription event; None when the event is
    not about the tenant's current subscription."""
    sub_id = str(event.aggregate_id)
    if event.type == SubscriptionStarted.NAME:
        tenant = {"subscription_id": sub_id, "subscription_status": event.data["status"]}
        tenant["cancel_at"] = None
    elif tenant is None:  # its start was never seen (a partial stream): adopt it
        tenant = {"subscription_id": sub_id, "subscription_status": Status.ACTIVE.value}
        tenant["cancel_at"] = None
    elif tenant["subscription_id"] != sub_id:
        return None
    else:
        tenant = {k: tenant[k] for k in SUBSCRIPTION_COLUMNS}
    _change_status(tenant, event)
    return tenant


def _change_status(tenant: Row, event: EventEnvelope) -> None:
    if event.type in SUBSCRIPTION_STATUS:
        tenant["subscription_status"] = SUBSCRIPTION_STATUS[event.type]
        if event.type == SubscriptionCanceled.NAME:
            tenant["cancel_at"] = None
    elif event.type == CancellationScheduled.NAME:
        tenant["cancel_at"] = event.data["cancel_at"]
    elif event.type == CancellationUndone.NAME:
        tenant["cancel_at"] = None


def plan_features(event: EventEnvelope) -> dict[str, dict[str, Any]] | None:
    """The features of the plan's terms the event carries, by key (None: it carries none)."""
    if event.type not in SUBSCRIPTION_TERMS:
        return None
    terms = event.data["to_terms"] if event.type == PlanChanged.NAME else event.data["terms"]
    return {f["key"]: f for f in terms["features"]}


def feature_key(event: EventEnvelope) -> dict[str, Any]:
    return {
        "app_id": event.app_id,
        "tenant_id": str(event.tenant_id),
        "feature_key": event.data["feature_key"],
    }


def quota_change(row: Row, event: EventEnvelope) -> None:
    data = event.data
    if "used" in data:
        row["used"] = data["used"]
    if "window" in data:
        row["window_end"] = data["window"]["end"] if data["window"] else None
    change = _QUOTA_CHANGES.get(event.type)
    if change is not None:
        change(row, data)
    if row["quota_enabled"] is None:  # its QuotaConfigured was never seen (a partial stream)
        row["quota_enabled"] = True


def _configured(row: Row, data: Mapping[str, Any]) -> None:
    _reconfigured(row, data)
    row["used"] = 0
    row["allowances"] = "[]"


def _reconfigured(row: Row, data: Mapping[str, Any]) -> None:
    row["quota_enabled"] = True
    row["quota_limit"] = data["limit"]
    row["enforcement"] = data["enforcement"]
    row["soft_threshold_percent"] = data["soft_threshold_percent"]


def _disabled(row: Row, data: Mapping[str, Any]) -> None:
    row["quota_enabled"] = False


def _allowance_granted(row: Row, data: Mapping[str, Any]) -> None:
    kept = [a for a in allowances(row) if a["grant_id"] != data["grant_id"]]
    granted = {"grant_id": data["grant_id"], "amount": data["amount"]}
    kept.append({**granted, "expires_at": data.get("expires_at")})
    row["allowances"] = _dump(kept)


def _allowance_revoked(row: Row, data: Mapping[str, Any]) -> None:
    row["allowances"] = _dump([a for a in allowances(row) if a["grant_id"] != data["grant_id"]])


def _reset(row: Row, data: Mapping[str, Any]) -> None:
    expired = set(data.get("expired_grants") or ())
    row["allowances"] = _dump([a for a in allowances(row) if a["grant_id"] not in expired])
    row["quota_limit"] = data["limit"]
    row["used"] = 0


_QUOTA_CHANGES: dict[str, Callable[[Row, Mapping[str, Any]], None]] = {
    QuotaConfigured.NAME: _configured,
    QuotaReconfigured.NAME: _reconfigured,
    QuotaDisabled.NAME: _disabled,
    AllowanceGranted.NAME: _allowance_granted,
    GrantRevoked.NAME: _allowance_revoked,
    QuotaReset.NAME: _reset,
}


def grant_change(row: Row, event: EventEnvelope) -> None:
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


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()
