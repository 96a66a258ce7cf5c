"""The reply quota commands return: the quota's current window as of the command's time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.quota import Quota


def quota_view(quota: Quota, now: datetime) -> dict[str, Any]:
    state = quota.state
    return {
        "quota_id": str(quota.id),
        "tenant_id": state.tenant_id,
        "feature_key": state.feature_key,
        "subscription_id": str(state.subscription_id) if state.subscription_id else None,
        "enabled": state.enabled,
        "limit": state.limit,
        "effective_limit": quota.effective_limit(now),
        "enforcement": state.enforcement.value,
        "soft_threshold_percent": state.soft_threshold_percent,
        "period": state.period.value,
        "meter": state.meter.value,
        "window": state.window.model_dump(mode="json") if state.window else None,
        "used": state.used,
        "remaining": quota.remaining(now),
        "overage": state.overage,
        "soft_limit_reached": state.soft_warned,
        "grants": [
            {"grant_id": grant_id, **grant.model_dump(mode="json"), "active": grant.active_at(now)}
            for grant_id, grant in sorted(state.grants.items())
        ],
        "version": quota.version,
    }
