"""A payment attempt failed: the invoice stays open for the next retry (dunning).

On a subscription's open invoice the retry is scheduled by the app's dunning settings unless
`next_retry_at` is given, the subscription becomes past_due, and after the last retry the
invoice is uncollectible and the subscription canceled or unpaid (commands/billing/dunning.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.base import Instant
from commands.billing.dunning import record_failure
from commands.invoices.target import InvoiceCommand
from commands.invoices.view import invoice_view
from commands.unit_of_work import UnitOfWork


class FailInvoicePayment(InvoiceCommand):
    reason: str = Field(min_length=1, max_length=500)
    next_retry_at: Instant | None = Field(
        default=None, description="default: by the app's dunning_retry_days"
    )


def fail_invoice_payment(command: FailInvoicePayment, uow: UnitOfWork) -> dict[str, Any]:
    invoice = command.load(uow)
    record_failure(uow, invoice, command.reason, command.next_retry_at)
    return invoice_view(invoice)
