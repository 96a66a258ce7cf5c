"""Issue a subscription's invoice: draft it and, unless the app gives drafts a grace period,
finalize it at once with the app's next number (and the tenant's credit balance)."""

from __future__ import annotations

from uuid import UUID

from commands.billing.compose import settings_of
from commands.invoices.finalize_invoice import finalize_now
from commands.unit_of_work import UnitOfWork
from domain.invoice import Invoice, InvoiceLine
from domain.period import Period
from domain.subscription import Subscription


def issue_invoice(
    uow: UnitOfWork,
    subscription: Subscription,
    invoice_id: UUID,
    lines: list[InvoiceLine],
    *,
    period: Period | None,
    origin: str,
    cutoff: int | None = None,
    finalize: bool | None = None,
) -> Invoice:
    """`finalize` None follows the app's grace period (0: finalize now)."""
    state = subscription.state
    settings = settings_of(uow, state.app_id)
    invoice = uow.add(
        Invoice.draft(
            invoice_id,
            state.app_id,
            state.tenant_id,
            state.price.currency,
            uow.cause,
            subscription_id=subscription.id,
            period=period,
            lines=lines,
            origin=origin,
            usage_cutoff=cutoff,
            finalize_at=settings.finalize_at(uow.now),
        )
    )
    if finalize or (finalize is None and settings.grace_period_hours == 0):
        finalize_now(uow, invoice)
    return invoice
