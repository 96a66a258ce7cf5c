"""Record the provider customer of a tenant (created by Tally from its billing profile, or
named by a completed checkout): the first link opens the account; the same link again
records nothing; another customer for a linked tenant is refused (a repair relinks)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.payments.account import PROVIDER_ID, AccountCommand, account_view
from commands.unit_of_work import UnitOfWork
from domain.errors import InvalidTransition
from domain.payment_account import PaymentAccount


class LinkPaymentCustomer(AccountCommand):
    customer_id: str = PROVIDER_ID
    digest: str = Field(default="", max_length=2000, description="of the profile sent")


def link_payment_customer(command: LinkPaymentCustomer, uow: UnitOfWork) -> dict[str, Any]:
    account = command.find(uow)
    if account is None:
        account = uow.add(
            PaymentAccount.link(
                command.app_id, command.tenant_id, command.customer_id, command.digest, uow.cause
            )
        )
    elif account.customer_id != command.customer_id:
        raise InvalidTransition(
            f"tenant {command.tenant_id} is linked to customer {account.customer_id}",
            field="customer_id",
        )
    return account_view(account)
