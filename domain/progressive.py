"""Progressive billing: when the usage accrued in a subscription's open period crosses one of
its plan's `progressive_thresholds`, an interim invoice bills that usage at once; the
period's own invoice then bills the whole period's usage and deducts what the interim
invoices already billed (Stripe's billing thresholds:
https://docs.stripe.com/billing/subscriptions/usage-based/thresholds — "an invoice is
generated as soon as the threshold is reached ... the amount is deducted from the invoice
at the end of the billing period").

Accrued usage is the period's usage lines, rated as the period's invoice would rate them
(before discounts and tax). An interim invoice holds those usage lines and, after the first,
an adjustment taking off what earlier interim invoices of the period billed.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from domain.base import stable_id
from domain.invoice import InvoiceLine, LineKind
from domain.money import Money
from domain.period import Period
from domain.subscription import SubscriptionState


def accrued(usage: Sequence[InvoiceLine], currency: str) -> Money:
    """The usage amount of these usage lines."""
    return sum((line.amount for line in usage), Money.zero(currency))


def thresholds_crossed(thresholds: Sequence[Money], amount: Money) -> int:
    """How many thresholds `amount` has reached."""
    return sum(1 for threshold in thresholds if amount.amount >= threshold.amount)


def interim_invoice_id(app_id: str, subscription_id: UUID, period: Period, crossed: int) -> UUID:
    """One interim invoice per threshold count and period: a retry finds it made."""
    return stable_id(
        "interim-invoice", app_id, str(subscription_id), period.start.isoformat(), str(crossed)
    )


def deduction_lines(state: SubscriptionState, period: Period | None) -> list[InvoiceLine]:
    """What interim invoices of `period` already billed, taken off (on the period's invoice,
    and on a later interim invoice of the same period)."""
    billed = state.interim_billed
    if billed is None or billed.amount == 0 or period is None or period != state.interim_period:
        return []
    return [
        InvoiceLine(
            line_id="interim_billed",
            kind=LineKind.ADJUSTMENT,
            description="usage already billed on interim invoices this period",
            quantity=1,
            unit_amount=-billed,
            amount=-billed,
            period=period,
        )
    ]
