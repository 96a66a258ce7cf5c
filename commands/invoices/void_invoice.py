"""Void an open or uncollectible invoice; its number stays used."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.invoices.target import InvoiceCommand
from commands.invoices.view import invoice_view
from commands.unit_of_work import UnitOfWork


class VoidInvoice(InvoiceCommand):
    reason: str = Field(min_length=1, max_length=500)


def void_invoice(command: VoidInvoice, uow: UnitOfWork) -> dict[str, Any]:
    invoice = command.load(uow)
    invoice.void(command.reason, uow.cause)
    return invoice_view(invoice)
