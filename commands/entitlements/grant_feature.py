"""Grant a tenant a feature by hand (a support override), with reason, expiry and limit."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.base import Instant
from commands.entitlements.target import TenantGrantsCommand
from commands.entitlements.view import grant_view
from commands.unit_of_work import UnitOfWork
from domain.entitlement_grant import TenantGrants
from domain.quota import MAX_AMOUNT


class GrantFeature(TenantGrantsCommand):
    reason: str = Field(min_length=1, max_length=500)
    expires_at: Instant | None = Field(default=None, description="default: until revoked")
    limit: int | None = Field(
        default=None, ge=0, le=MAX_AMOUNT, description="the limit the entitlement reports"
    )


def grant_feature(command: GrantFeature, uow: UnitOfWork) -> dict[str, Any]:
    grants = command.find(uow)
    if grants is None:
        grants = uow.add(
            TenantGrants.open(
                command.app_id,
                command.tenant_id,
                command.feature_key,
                command.reason,
                uow.cause,
                expires_at=command.expires_at,
                limit=command.limit,
            )
        )
    else:
        grants.grant(
            command.feature_key,
            command.reason,
            uow.cause,
            expires_at=command.expires_at,
            limit=command.limit,
        )
    return grant_view(grants, command.feature_key, uow.now)
