"""The upcoming invoice: exactly what the next invoice of a subscription would hold now.

The same code path as the billing run (commands/billing/compose.py) on a unit of work that
is never committed: coupons are previewed, not applied; nothing is recorded. Usage counts up
to what the usage read model has applied.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from commands.base import EventStore
from commands.billing.compose import BillingPorts, compose
from commands.unit_of_work import UnitOfWork
from domain.balance import CreditBalance, balance_id
from domain.base import Cause
from domain.billing import upcoming_point
from domain.credit_grant import TenantCredits, tenant_credits_id
from domain.errors import NotFound
from domain.invoice import compute_totals, split_due
from domain.money import Money
from domain.subscription import Subscription


def upcoming_invoice(
    store: EventStore, now: datetime, ports: BillingPorts, app_id: str, subscription_id: UUID
) -> dict[str, Any]:
    """The next invoice as a draft view (status "upcoming"); 404 when nothing will be billed."""
    uow = UnitOfWork(store, Cause(occurred_at=now, actor="upcoming-invoice"))
    subscription = uow.get(Subscription, subscription_id, field="subscription_id", app_id=app_id)
    point = upcoming_point(subscription.state)
    if point is None:
        raise NotFound(
            f"subscription {subscription_id} has no upcoming invoice ({subscription.status.value})",
            field="subscription_id",
        )
    cutoff = ports.usage.safe_cutoff()
    composed = compose(uow, subscription, point, ports, cutoff=cutoff, invoice_id=None)
    state = subscription.state
    currency = state.price.currency
    totals = compute_totals(currency, composed.lines)
    found = uow.find(CreditBalance, balance_id(app_id, state.tenant_id, currency))
    ledger = uow.find(TenantCredits, tenant_credits_id(app_id, state.tenant_id))
    zero = Money.zero(currency)
    credits = (
        min(ledger.available(currency, now), totals.total)
        if ledger is not None and totals.total.amount > 0
        else zero
    )
    applied, due, created = split_due(totals.total - credits, found.balance if found else zero)
    period = point.period
    return {
        "invoice_id": None,
        "tenant_id": state.tenant_id,
        "subscription_id": str(subscription.id),
        "status": "upcoming",
        "currency": currency,
        "billing_point": point.at.isoformat(),
        "period": period.model_dump(mode="json") if period else None,
        "number": None,
        "number_text": None,
        "lines": [line.model_dump(mode="json") for line in composed.lines],
        "subtotal": totals.subtotal.model_dump(),
        "discount_total": totals.discount_total.model_dump(),
        "tax_total": totals.tax_total.model_dump(),
        "total": totals.total.model_dump(),
        "amount_due": due.model_dump(),
        "credits_applied": credits.model_dump(),
        "balance_applied": applied.model_dump(),
        "balance_created": created.model_dump(),
        "usage_cutoff": cutoff,
    }
