"""The reply of a credit note command and read: the document as JSON."""

from __future__ import annotations

from typing import Any

from domain.credit_note import CreditNote
from domain.invoice import LineCredit


def credit_line_view(line: LineCredit) -> dict[str, Any]:
    return {
        **line.model_dump(mode="json"),
        "total": line.total.model_dump(),
        "revenue": line.revenue.model_dump(),
    }


def credit_note_view(note: CreditNote) -> dict[str, Any]:
    """Ids as strings, Money as {"amount", "currency"}."""
    state = note.state
    return {
        "credit_note_id": str(note.id),
        "tenant_id": state.tenant_id,
        "invoice_id": str(state.invoice_id),
        "invoice_number_text": state.invoice_number_text,
        "subscription_id": str(state.subscription_id) if state.subscription_id else None,
        "currency": state.currency,
        "number": state.number,
        "number_text": state.number_text,
        "reason": state.reason,
        "method": state.method.value,
        "lines": [credit_line_view(line) for line in state.lines],
        "subtotal": state.subtotal.model_dump(),
        "discount_total": state.discount_total.model_dump(),
        "tax_total": state.tax_total.model_dump(),
        "total": state.total.model_dump(),
        "refund_status": state.refund_status,
        "payment_reference": state.payment_reference,
        "issued_at": state.issued_at.isoformat(),
        "version": note.version,
    }
