"""A payment attempt failed; the invoice stays open for the next retry (dunning)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.base import Instant
from commands.invoices.target import InvoiceCommand
from commands.invoices.view import invoice_view
from commands.unit_of_work import UnitOfWork


class FailInvoicePayment(InvoiceCommand):
    reason: str = Field(min_length=1, max_length=500)
    next_retry_at: Instant | None = None


def fail_invoice_payment(command: FailInvoicePayment, uow: UnitOfWork) -> dict[str, Any]:
    invoice = command.load(uow)
    invoice.fail_payment(command.reason, uow.cause, command.next_retry_at)
    return invoice_view(invoice)
