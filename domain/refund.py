"""A refund made at the payment provider as the credit note lines that return exactly it.

A refund of what is left of the invoice credits the rest of it (no lines). A partial refund
credits charge lines in invoice order: each whole line while its credit (with its discount
share and tax, as domain/credit_note.py computes it) fits in what is left to return, then
the largest part of the next line that still fits (found by bisection, since a credit's
total grows with its amount). Tax rounding can leave a minor unit or two over; `planned_total`
says what the note will return.
"""

from __future__ import annotations

from domain.credit_note import CreditRequest, plan_credit
from domain.invoice import CREDITABLE_KINDS, Invoice
from domain.money import Money


def refund_requests(invoice: Invoice, refund: Money) -> list[CreditRequest] | None:
    """The lines to credit for `refund` (None: everything left of the invoice)."""
    if refund >= invoice.creditable_total:
        return None
    requests: list[CreditRequest] = []
    needed = refund.amount
    for line in invoice.state.lines:
        left = invoice.creditable_amount(line.line_id).amount
        if needed <= 0:
            break
        if line.kind not in CREDITABLE_KINDS or left <= 0 or line.amount.amount <= 0:
            continue
        amount = _largest_fitting(invoice, line.line_id, left, needed)
        if amount:
            requests.append(_request(line.line_id, line.amount.with_amount(amount)))
            needed -= _total(invoice, line.line_id, line.amount.with_amount(amount))
    return requests


def planned_total(invoice: Invoice, requests: list[CreditRequest] | None) -> Money:
    credits = plan_credit(invoice, requests)
    return sum((c.total for c in credits), Money.zero(invoice.state.currency))


def _largest_fitting(invoice: Invoice, line_id: str, left: int, needed: int) -> int:
    """The largest amount of the line (at most `left`) whose credit total is <= needed."""
    currency = invoice.state.currency
    low, high = 0, left
    while low < high:
        middle = (low + high + 1) // 2
        if _total(invoice, line_id, Money(amount=middle, currency=currency)) <= needed:
            low = middle
        else:
            high = middle - 1
    return low


def _total(invoice: Invoice, line_id: str, amount: Money) -> int:
    return planned_total(invoice, [_request(line_id, amount)]).amount


def _request(line_id: str, amount: Money) -> CreditRequest:
    return CreditRequest(line_id=line_id, amount=amount)
