"""Record one repair of a drift between the provider and the ledger (reconciliation)."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from commands.payments.account import AccountCommand, account_view
from commands.unit_of_work import UnitOfWork


class RecordPaymentRepair(AccountCommand):
    drift: Literal["missing", "extra", "amount", "status"]
    object: Literal["customer", "subscription", "invoice", "payment"]
    object_id: str = Field(min_length=1, max_length=255)
    detail: str = Field(min_length=1, max_length=500)
    action: str = Field(min_length=1, max_length=500)
    customer_id: str | None = Field(default=None, max_length=255, description="a relink")
    invoice_id: UUID | None = None
    provider_invoice_id: str | None = Field(default=None, max_length=255)


def record_payment_repair(command: RecordPaymentRepair, uow: UnitOfWork) -> dict[str, Any]:
    account = command.load(uow)
    drift = command.model_dump(
        include={
            "drift",
            "object",
            "object_id",
            "detail",
            "action",
            "customer_id",
            "invoice_id",
            "provider_invoice_id",
        }
    )
    account.repaired(uow.cause, **drift)
    return account_view(account)
