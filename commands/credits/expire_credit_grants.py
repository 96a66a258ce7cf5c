"""Expire a tenant's credit grants whose expires_at has come by the clock (billing runs)."""

from __future__ import annotations

from typing import Any

from commands.base import TENANT_FIELD, Command
from commands.unit_of_work import UnitOfWork
from domain.credit_grant import TenantCredits, tenant_credits_id


class ExpireCreditGrants(Command):
    tenant_id: str = TENANT_FIELD


def expire_credit_grants(command: ExpireCreditGrants, uow: UnitOfWork) -> dict[str, Any]:
    """How many grants lapsed now (none for a tenant without grants)."""
    ledger = uow.find(TenantCredits, tenant_credits_id(command.app_id, command.tenant_id))
    if ledger is None or ledger.state.app_id != command.app_id:
        return {"tenant_id": command.tenant_id, "expired": 0}
    lapsed = ledger.expire_due(uow.cause)
    return {"tenant_id": command.tenant_id, "expired": len(lapsed)}
