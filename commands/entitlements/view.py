"""The reply grant commands return: the feature's grant (if any) as of the command's time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.entitlement_grant import TenantGrants


def grant_view(grants: TenantGrants, feature_key: str, now: datetime) -> dict[str, Any]:
    grant = grants.grant_for(feature_key)
    return {
        "tenant_id": grants.state.tenant_id,
        "feature_key": feature_key,
        "granted": grant is not None,
        "active": grant is not None and grant.active_at(now),
        "grant": grant.model_dump(mode="json") if grant is not None else None,
        "version": grants.version,
    }
