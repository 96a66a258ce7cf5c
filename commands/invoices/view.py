"""The reply every invoice command returns: the invoice's state now."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from domain.invoice import Invoice, InvoiceLine
from domain.money import Money

_LINES = TypeAdapter(list[InvoiceLine])  # every line dumped in one call, not one each


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _money(value: Money | None) -> dict[str, Any] | None:
    return value.model_dump() if value is not None else None


def invoice_view(invoice: Invoice) -> dict[str, Any]:
    """Ids as strings, Money as {"amount", "currency"}; a draft shows its running totals."""
    state = invoice.state
    totals = invoice.totals
    return {
        "invoice_id": str(invoice.id),
        "tenant_id": state.tenant_id,
        "subscription_id": str(state.subscription_id) if state.subscription_id else None,
        "status": state.status.value,
        "currency": state.currency,
        "period": state.period.model_dump(mode="json") if state.period else None,
        "number": state.number,
        "number_text": state.number_text,
        "lines": _LINES.dump_python(state.lines, mode="json"),
        "subtotal": totals.subtotal.model_dump(),
        "discount_total": totals.discount_total.model_dump(),
        "tax_total": totals.tax_total.model_dump(),
        "total": totals.total.model_dump(),
        "amount_due": invoice.amount_due.model_dump(),
        "credits_applied": _money(state.credits_applied),
        "balance_applied": _money(state.balance_applied),
        "balance_created": _money(state.balance_created),
        "origin": state.origin,
        "usage_cutoff": state.usage_cutoff,
        "finalize_at": _time(state.finalize_at),
        "amount_paid": state.amount_paid.model_dump() if state.amount_paid else None,
        "payment_reference": state.payment_reference,
        "payment_attempts": state.payment_attempts,
        "last_payment_error": state.last_payment_error,
        "next_retry_at": _time(state.next_retry_at),
        "finalized_at": _time(state.finalized_at),
        "paid_at": _time(state.paid_at),
        "voided_at": _time(state.voided_at),
        "void_reason": state.void_reason,
        "marked_uncollectible_at": _time(state.marked_uncollectible_at),
        "version": invoice.version,
    }
