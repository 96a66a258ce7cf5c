"""Take back an allowance grant; usage already counted stays counted."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.base import ID_PATTERN
from commands.quotas.target import QuotaCommand
from commands.quotas.view import quota_view
from commands.unit_of_work import UnitOfWork


class RevokeGrant(QuotaCommand):
    grant_id: str = Field(pattern=ID_PATTERN)
    reason: str = Field(min_length=1, max_length=500)


def revoke_grant(command: RevokeGrant, uow: UnitOfWork) -> dict[str, Any]:
    quota = command.load(uow)
    quota.revoke(command.grant_id, command.reason, uow.cause)
    return quota_view(quota, uow.now)
