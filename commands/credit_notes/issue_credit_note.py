"""Issue a credit note on an open or paid invoice: refund, credit balance or a lower amount
due, with the app's next gap-free CN- number."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from pydantic import Field

from commands.billing.dunning import InvoiceIndex, settle
from commands.bus import Handler
from commands.credit_notes.view import credit_note_view
from commands.invoices.target import InvoiceCommand
from commands.unit_of_work import UnitOfWork
from domain.balance import CreditBalance, balance_id
from domain.credit_note import (
    CreditNote,
    CreditNoteNumbering,
    CreditRequest,
    credit_note_numbering_id,
)
from domain.errors import AlreadyExists
from domain.invoice import CreditMethod, Invoice, InvoiceStatus


class IssueCreditNote(InvoiceCommand):
    """Credit lines of a finalized invoice (no lines: what is left of the whole invoice)."""

    reason: str = Field(min_length=1, max_length=500, description="why the invoice is credited")
    method: CreditMethod = Field(
        description="refund (paid invoices), credit_balance, or reduce_amount_due (open ones)"
    )
    lines: list[CreditRequest] | None = Field(
        default=None,
        max_length=1000,
        description="[{line_id, amount? | quantity?}]; a line with neither: what is left of it",
    )
    credit_note_id: UUID | None = Field(default=None, description="default: generated")
    refunded_by: str | None = Field(
        default=None,
        max_length=255,
        description="a refund the payment provider already made (e.g. Stripe's re_…): the "
        "note's refund is recorded as refunded, not pending",
    )

    def concurrency_key(self) -> str:
        return f"{self.app_id}/credit-note-numbering"  # every note of an app takes a number


def issue_credit_note_handler(invoices: InvoiceIndex | None = None) -> Handler:
    """The handler, wired with the index that finds a subscription's other invoices (an
    open invoice a credit note settles may recover its subscription, as a payment does)."""

    def issue_credit_note(command: IssueCreditNote, uow: UnitOfWork) -> dict[str, Any]:
        invoice = command.load(uow)
        note_id = command.credit_note_id or uuid4()
        if command.credit_note_id is not None and uow.exists(note_id):
            raise AlreadyExists(f"credit note {note_id} already exists", field="credit_note_id")
        was_open = invoice.status is InvoiceStatus.OPEN
        app_id = command.app_id
        numbering = uow.find(CreditNoteNumbering, credit_note_numbering_id(app_id))
        if numbering is None:
            numbering = uow.add(CreditNoteNumbering.start(app_id, uow.cause))
        note = uow.add(
            CreditNote.issue(
                note_id,
                invoice,
                numbering,
                command.method,
                command.reason,
                command.lines,
                uow.cause,
                command.refunded_by,
            )
        )
        if command.method is CreditMethod.CREDIT_BALANCE:
            credit_balance(uow, invoice, note)
        if was_open and invoice.status is InvoiceStatus.PAID:
            settle(uow, invoice, invoices)
        return credit_note_view(note)

    return issue_credit_note


issue_credit_note = issue_credit_note_handler()


def credit_balance(uow: UnitOfWork, invoice: Invoice, note: CreditNote) -> None:
    """The note's total goes to the tenant's credit balance in its currency (drawn by the
    next invoice at finalize), in the same transaction as the note."""
    state = invoice.state
    reason = f"credit note {note.number_text}"
    balance = uow.find(CreditBalance, balance_id(state.app_id, state.tenant_id, state.currency))
    if balance is None:
        uow.add(
            CreditBalance.open(
                state.app_id,
                state.tenant_id,
                note.state.total,
                uow.cause,
                invoice_id=invoice.id,
                reason=reason,
            )
        )
    else:
        balance.move(note.state.total, uow.cause, invoice_id=invoice.id, reason=reason)
