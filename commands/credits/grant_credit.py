"""Grant prepaid credits to a tenant: an amount drawn by its next invoices in that currency."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from commands.base import TENANT_FIELD, Command, Instant
from commands.credits.view import grant_view
from commands.unit_of_work import UnitOfWork
from domain.credit_grant import (
    MAX_PRIORITY,
    MAX_REASON,
    MIN_PRIORITY,
    TenantCredits,
    tenant_credits_id,
)
from domain.errors import InvalidValue
from domain.money import Money


class GrantCredit(Command):
    tenant_id: str = TENANT_FIELD
    amount: Money = Field(description="minor units and currency, above 0")
    priority: int = Field(
        default=50,
        ge=MIN_PRIORITY,
        le=MAX_PRIORITY,
        strict=True,
        description="0-100; 0 is drawn first (as Stripe's credit grants)",
    )
    expires_at: Instant | None = Field(
        default=None, description="when what is left lapses (in the future); absent: never"
    )
    reason: str = Field(min_length=1, max_length=MAX_REASON, description="why it was granted")

    @field_validator("amount")
    @classmethod
    def _positive(cls, amount: Money) -> Money:
        if amount.amount <= 0:
            raise InvalidValue("amount must be above zero", field="amount")
        return amount


def grant_credit(command: GrantCredit, uow: UnitOfWork) -> dict[str, Any]:
    """The new grant; expires_at must be after the ledger's clock (422 naming it)."""
    ledger = uow.find(TenantCredits, tenant_credits_id(command.app_id, command.tenant_id))
    if ledger is None:
        ledger = uow.add(TenantCredits.open(command.app_id, command.tenant_id, uow.cause))
    grant = ledger.grant(
        command.amount,
        uow.cause,
        priority=command.priority,
        reason=command.reason,
        expires_at=command.expires_at,
    )
    return grant_view(command.tenant_id, grant)
