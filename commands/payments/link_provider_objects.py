"""Record which provider subscription mirrors a Tally subscription, and which provider
invoice collects a Tally invoice (each once; the same link again records nothing)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from commands.payments.account import PROVIDER_ID, AccountCommand, account_view
from commands.unit_of_work import UnitOfWork


class LinkProviderSubscription(AccountCommand):
    subscription_id: UUID
    provider_subscription_id: str = PROVIDER_ID


class LinkProviderInvoice(AccountCommand):
    invoice_id: UUID
    provider_invoice_id: str = PROVIDER_ID
    replaces: str | None = Field(
        default=None, max_length=255, description="the linked provider invoice it replaces"
    )


def link_provider_subscription(
    command: LinkProviderSubscription, uow: UnitOfWork
) -> dict[str, Any]:
    account = command.load(uow)
    account.link_subscription(command.subscription_id, command.provider_subscription_id, uow.cause)
    return account_view(account)


def link_provider_invoice(command: LinkProviderInvoice, uow: UnitOfWork) -> dict[str, Any]:
    account = command.load(uow)
    account.link_invoice(
        command.invoice_id, command.provider_invoice_id, uow.cause, command.replaces
    )
    return account_view(account)
