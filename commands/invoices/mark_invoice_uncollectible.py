"""Give up collecting an open invoice (it can still be paid or voided later)."""

from __future__ import annotations

from typing import Any

from commands.invoices.target import InvoiceCommand
from commands.invoices.view import invoice_view
from commands.unit_of_work import UnitOfWork


class MarkInvoiceUncollectible(InvoiceCommand):
    pass


def mark_invoice_uncollectible(
    command: MarkInvoiceUncollectible, uow: UnitOfWork
) -> dict[str, Any]:
    invoice = command.load(uow)
    invoice.mark_uncollectible(uow.cause)
    return invoice_view(invoice)
