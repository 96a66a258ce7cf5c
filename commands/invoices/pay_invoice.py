"""Record that an open (or uncollectible) invoice was paid in full; a past_due or unpaid
subscription it bills recovers unless another of its invoices is still failing (dunning)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.billing.dunning import InvoiceIndex, settle
from commands.bus import Handler
from commands.invoices.target import InvoiceCommand
from commands.invoices.view import invoice_view
from commands.unit_of_work import UnitOfWork
from domain.money import Money


class PayInvoice(InvoiceCommand):
    amount: Money | None = Field(default=None, description="if given, must equal the total")
    payment_reference: str | None = Field(default=None, max_length=200)


def pay_invoice_handler(invoices: InvoiceIndex | None = None) -> Handler:
    """The handler, wired with the index that finds the subscription's other invoices."""

    def pay_invoice(command: PayInvoice, uow: UnitOfWork) -> dict[str, Any]:
        invoice = command.load(uow)
        invoice.pay(uow.cause, command.amount, command.payment_reference)
        settle(uow, invoice, invoices)
        return invoice_view(invoice)

    return pay_invoice


pay_invoice = pay_invoice_handler()  # without an index: the payment alone decides recovery
