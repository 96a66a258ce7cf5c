"""Draft an invoice for a tenant (optionally for one subscription and period)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from pydantic import Field

from commands.base import TENANT_FIELD, Command, Currency
from commands.invoices.line_input import InvoiceLineInput
from commands.invoices.view import invoice_view
from commands.unit_of_work import UnitOfWork
from domain.errors import AlreadyExists, CurrencyMismatch, NotFound
from domain.invoice import Invoice
from domain.period import Period
from domain.subscription import Subscription


class DraftInvoice(Command):
    tenant_id: str = TENANT_FIELD
    subscription_id: UUID | None = None
    currency: Currency
    period: Period | None = None
    lines: list[InvoiceLineInput] = Field(default_factory=list, max_length=1000)
    invoice_id: UUID | None = Field(default=None, description="default: generated")


def draft_invoice(command: DraftInvoice, uow: UnitOfWork) -> dict[str, Any]:
    invoice_id = command.invoice_id or uuid4()
    if command.invoice_id is not None and uow.find(Invoice, invoice_id) is not None:
        raise AlreadyExists(f"invoice {invoice_id} already exists", field="invoice_id")
    if command.subscription_id is not None:
        _check_subscription(command, command.subscription_id, uow)
    invoice = uow.add(
        Invoice.draft(
            invoice_id,
            command.app_id,
            command.tenant_id,
            command.currency,
            uow.cause,
            subscription_id=command.subscription_id,
            period=command.period,
            lines=[line.line() for line in command.lines],
        )
    )
    return invoice_view(invoice)


def _check_subscription(command: DraftInvoice, subscription_id: UUID, uow: UnitOfWork) -> None:
    """The subscription must be this tenant's, in this app, billed in this currency."""
    subscription = uow.get(
        Subscription, subscription_id, field="subscription_id", app_id=command.app_id
    )
    if subscription.state.tenant_id != command.tenant_id:
        raise NotFound(f"subscription {subscription_id} not found", field="subscription_id")
    if subscription.state.price.currency != command.currency:
        raise CurrencyMismatch(
            f"the subscription bills in {subscription.state.price.currency}", field="currency"
        )
