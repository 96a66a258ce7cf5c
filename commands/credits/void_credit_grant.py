"""Void a credit grant: what is left of it lapses (an event with the amount)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from commands.base import TENANT_FIELD, Command
from commands.credits.view import grant_view
from commands.unit_of_work import UnitOfWork
from domain.credit_grant import MAX_REASON, TenantCredits, tenant_credits_id
from domain.errors import NotFound


class VoidCreditGrant(Command):
    tenant_id: str = TENANT_FIELD
    grant_id: UUID
    reason: str = Field(default="voided", min_length=1, max_length=MAX_REASON)


def void_credit_grant(command: VoidCreditGrant, uow: UnitOfWork) -> dict[str, Any]:
    """404 for another tenant's or app's grant; 409 once expired or voided."""
    ledger = uow.find(TenantCredits, tenant_credits_id(command.app_id, command.tenant_id))
    if ledger is None or ledger.state.app_id != command.app_id:
        raise NotFound(f"credit grant {command.grant_id} not found", field="grant_id")
    grant = ledger.void(command.grant_id, uow.cause, reason=command.reason)
    return grant_view(command.tenant_id, grant)
