"""Void an open or uncollectible invoice; its number stays used, and what it drew from the
tenant's prepaid credit grants comes back to them (CreditReinstated, as Stripe reinstates
billing credits of a voided invoice), and so does what it drew from the tenant's credit
balance (as Stripe returns an applied customer balance on void since API 2019-12-03)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.invoices.target import InvoiceCommand
from commands.invoices.view import invoice_view
from commands.unit_of_work import UnitOfWork
from domain.balance import CreditBalance, balance_id
from domain.credit_grant import TenantCredits, tenant_credits_id
from domain.invoice import Invoice


class VoidInvoice(InvoiceCommand):
    reason: str = Field(min_length=1, max_length=500)


def void_invoice(command: VoidInvoice, uow: UnitOfWork) -> dict[str, Any]:
    invoice = command.load(uow)
    invoice.void(command.reason, uow.cause)
    state = invoice.state
    ledger = uow.find(TenantCredits, tenant_credits_id(state.app_id, state.tenant_id))
    if ledger is not None and state.credits_applied is not None:
        ledger.reinstate(invoice.id, uow.cause)
    return_balance(uow, invoice)
    return invoice_view(invoice)


def return_balance(uow: UnitOfWork, invoice: Invoice) -> None:
    """The credit balance the invoice drew at finalize goes back to the tenant."""
    state = invoice.state
    applied = state.balance_applied
    if applied is None or applied.is_zero():
        return
    balance = uow.find(CreditBalance, balance_id(state.app_id, state.tenant_id, state.currency))
    if balance is not None:
        balance.move(applied, uow.cause, invoice_id=invoice.id, reason="invoice voided")
