"""Commands that act on one existing invoice share its id field and loading."""

from __future__ import annotations

from uuid import UUID

from commands.base import Command
from commands.unit_of_work import UnitOfWork
from domain.invoice import Invoice


class InvoiceCommand(Command):
    invoice_id: UUID

    def load(self, uow: UnitOfWork) -> Invoice:
        return uow.get(Invoice, self.invoice_id, field="invoice_id", app_id=self.app_id)
