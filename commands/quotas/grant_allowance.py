"""Give a tenant extra allowance on a quota (a support override), with reason and expiry."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from pydantic import Field

from commands.base import ID_PATTERN, Instant
from commands.quotas.target import QuotaCommand
from commands.quotas.view import quota_view
from commands.unit_of_work import UnitOfWork
from domain.quota import MAX_AMOUNT


class GrantAllowance(QuotaCommand):
    amount: int = Field(ge=1, le=MAX_AMOUNT)
    reason: str = Field(min_length=1, max_length=500)
    expires_at: Instant | None = None
    grant_id: str | None = Field(default=None, pattern=ID_PATTERN, description="default: new")


def grant_allowance(command: GrantAllowance, uow: UnitOfWork) -> dict[str, Any]:
    quota = command.load(uow)
    grant_id = command.grant_id or uuid4().hex
    quota.grant(grant_id, command.amount, command.reason, command.expires_at, uow.cause)
    return {"grant_id": grant_id, **quota_view(quota, uow.now)}
