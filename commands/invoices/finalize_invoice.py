"""Finalize a draft: freeze its totals and give it the app's next gap-free number."""

from __future__ import annotations

from typing import Any

from commands.invoices.target import InvoiceCommand
from commands.invoices.view import invoice_view
from commands.unit_of_work import UnitOfWork
from domain.balance import CreditBalance, balance_id
from domain.credit_grant import TenantCredits, tenant_credits_id
from domain.invoice import Invoice, InvoiceNumbering, compute_totals, invoice_numbering_id
from domain.money import Money


class FinalizeInvoice(InvoiceCommand):
    def concurrency_key(self) -> str:
        return f"{self.app_id}/invoice-numbering"  # every finalize of an app takes a number


def finalize_invoice(command: FinalizeInvoice, uow: UnitOfWork) -> dict[str, Any]:
    invoice = command.load(uow)
    finalize_now(uow, invoice)
    return invoice_view(invoice)


def finalize_now(uow: UnitOfWork, invoice: Invoice) -> None:
    """Finalize with the app's numbering and the tenant's credit balance in the same unit
    of work: a concurrent finalize conflicts on the numbering's version and the bus retries
    it with the next number; the prepaid credit grants drawn (first) and the balance drawn
    or created (then) move in the same transaction."""
    app_id, state = invoice.state.app_id, invoice.state
    numbering = uow.find(InvoiceNumbering, invoice_numbering_id(app_id))
    if numbering is None:
        numbering = uow.add(InvoiceNumbering.start(app_id, uow.cause))
    balance = uow.find(CreditBalance, balance_id(app_id, state.tenant_id, state.currency))
    credits = _draw_credits(uow, invoice)
    invoice.finalize(
        numbering, uow.cause, balance.balance if balance is not None else None, credits
    )
    _move_balance(uow, invoice, balance)


def _draw_credits(uow: UnitOfWork, invoice: Invoice) -> Money | None:
    """Draw the tenant's credit grants in the invoice's currency, up to its total."""
    state = invoice.state
    ledger = uow.find(TenantCredits, tenant_credits_id(state.app_id, state.tenant_id))
    if ledger is None:
        return None
    total = compute_totals(state.currency, state.lines).total
    if total.amount <= 0:
        ledger.expire_due(uow.cause)
        return None
    return ledger.draw(total, uow.cause, invoice_id=invoice.id)


def _move_balance(uow: UnitOfWork, invoice: Invoice, balance: CreditBalance | None) -> None:
    state = invoice.state
    applied, created = state.balance_applied, state.balance_created
    if balance is not None and applied is not None and not applied.is_zero():
        balance.move(-applied, uow.cause, invoice_id=invoice.id, reason="drawn by an invoice")
    if created is None or created.is_zero():
        return
    reason = "an invoice total below zero"
    if balance is None:
        uow.add(
            CreditBalance.open(
                state.app_id,
                state.tenant_id,
                created,
                uow.cause,
                invoice_id=invoice.id,
                reason=reason,
            )
        )
    else:
        balance.move(created, uow.cause, invoice_id=invoice.id, reason=reason)
