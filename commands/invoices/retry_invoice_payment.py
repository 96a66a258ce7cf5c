"""Try again to collect an open invoice through the payment provider (the billing run sends
this at the invoice's `next_retry_at`): a success pays it and may recover the subscription,
a failure is the next dunning attempt (commands/billing/dunning.py)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.billing.dunning import InvoiceIndex, record_failure, settle
from commands.billing.ports import PaymentCollector
from commands.bus import Handler
from commands.invoices.target import InvoiceCommand
from commands.invoices.view import invoice_view
from commands.unit_of_work import UnitOfWork
from domain.errors import InvalidTransition, with_article
from domain.invoice import Invoice, InvoiceStatus

FAILED_WITHOUT_REASON = "payment failed"
COLLECTABLE = frozenset({InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE})


class RetryInvoicePayment(InvoiceCommand):
    attempt: int | None = Field(
        default=None,
        ge=1,
        description="the attempt this retry is (payment_attempts + 1); once that attempt "
        "was made, or the invoice is no longer open, it does nothing",
    )


def retry_invoice_payment_handler(
    payments: PaymentCollector, invoices: InvoiceIndex | None = None
) -> Handler:
    """The handler, wired with the payment provider and the invoice index."""

    def retry_invoice_payment(command: RetryInvoicePayment, uow: UnitOfWork) -> dict[str, Any]:
        invoice = command.load(uow)
        if command.attempt is not None and is_stale(invoice, command.attempt):
            return {"retried": False, "paid": False, "invoice": invoice_view(invoice)}
        require_collectable(invoice)
        outcome = payments.collect(invoice)
        if outcome.succeeded:
            invoice.pay(uow.cause, payment_reference=outcome.reference)
            settle(uow, invoice, invoices)
        else:
            record_failure(uow, invoice, outcome.reason or FAILED_WITHOUT_REASON)
        return {"retried": True, "paid": outcome.succeeded, "invoice": invoice_view(invoice)}

    return retry_invoice_payment


def is_stale(invoice: Invoice, attempt: int) -> bool:
    """A scheduled retry already made (a second run) or no longer wanted."""
    state = invoice.state
    return invoice.status is not InvoiceStatus.OPEN or state.payment_attempts + 1 != attempt


def require_collectable(invoice: Invoice) -> None:
    """Checked before the provider is asked, so a paid or void invoice is never charged."""
    if invoice.status not in COLLECTABLE:
        raise InvalidTransition(
            f"cannot collect {with_article(invoice.status.value)} invoice "
            "(allowed from: open, uncollectible)",
            field="status",
            status=invoice.status.value,
        )
