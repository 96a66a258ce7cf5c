"""Add a line to a draft invoice (a finalized invoice is frozen)."""

from __future__ import annotations

from typing import Any

from commands.invoices.line_input import InvoiceLineInput
from commands.invoices.target import InvoiceCommand
from commands.invoices.view import invoice_view
from commands.unit_of_work import UnitOfWork


class AddInvoiceLine(InvoiceCommand):
    line: InvoiceLineInput


def add_invoice_line(command: AddInvoiceLine, uow: UnitOfWork) -> dict[str, Any]:
    invoice = command.load(uow)
    invoice.add_line(command.line.line(), uow.cause)
    return invoice_view(invoice)
