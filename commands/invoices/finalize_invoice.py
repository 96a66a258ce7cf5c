"""Finalize a draft: freeze its totals and give it the app's next gap-free number."""

from __future__ import annotations

from typing import Any

from commands.invoices.target import InvoiceCommand
from commands.invoices.view import invoice_view
from commands.unit_of_work import UnitOfWork
from domain.invoice import InvoiceNumbering, invoice_numbering_id


class FinalizeInvoice(InvoiceCommand):
    def concurrency_key(self) -> str:
        return f"{self.app_id}/invoice-numbering"  # every finalize of an app takes a number

    pass


def finalize_invoice(command: FinalizeInvoice, uow: UnitOfWork) -> dict[str, Any]:
    """The invoice and the app's numbering are saved together: a concurrent finalize
    conflicts on the numbering's version and the bus retries it with the next number."""
    invoice = command.load(uow)
    numbering = uow.find(InvoiceNumbering, invoice_numbering_id(command.app_id))
    if numbering is None:
        numbering = uow.add(InvoiceNumbering.start(command.app_id, uow.cause))
    invoice.finalize(numbering, uow.cause)
    return invoice_view(invoice)
