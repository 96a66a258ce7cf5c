"""Take back a manual feature grant; the plan's answer applies again."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.entitlements.target import TenantGrantsCommand
from commands.entitlements.view import grant_view
from commands.unit_of_work import UnitOfWork
from domain.errors import NotFound


class RevokeFeature(TenantGrantsCommand):
    reason: str = Field(min_length=1, max_length=500)


def revoke_feature(command: RevokeFeature, uow: UnitOfWork) -> dict[str, Any]:
    grants = command.find(uow)
    if grants is None:
        raise NotFound(
            f"tenant {command.tenant_id} has no grant for feature {command.feature_key}",
            field="feature_key",
        )
    grants.revoke(command.feature_key, command.reason, uow.cause)
    return grant_view(grants, command.feature_key, uow.now)
