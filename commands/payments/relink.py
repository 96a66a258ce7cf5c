"""After a tenant's Stripe customer was made again (it was deleted at Stripe): its live
subscriptions are mirrored again and its open invoices pushed again, for the new customer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from commands.payments.collect import replace_invoice
from commands.payments.context import PaymentContext
from commands.payments.mirror import mirror_subscription
from commands.payments.ports import ProviderRefused
from domain.base import Aggregate
from domain.errors import DomainError
from domain.invoice import Invoice, InvoiceStatus
from domain.subscription import TERMINAL, Subscription

Ids = Callable[[str, str, str | None], list[UUID]]
A = TypeVar("A", bound=Aggregate[Any])


def carry_over(ctx: PaymentContext, ids: Ids, app_id: str, tenant_id: str) -> list[str]:
    """What moved to the new customer, one line per object."""
    moved = []
    subscriptions = ids(app_id, Subscription.TYPE, tenant_id)
    for subscription in _found(ctx, Subscription, subscriptions, app_id):
        if subscription.state.status not in TERMINAL:
            moved.append(_safely(_remirror, ctx, subscription))
    for invoice in _found(ctx, Invoice, ids(app_id, Invoice.TYPE, tenant_id), app_id):
        if _owed(invoice):
            moved.append(_safely(_repush, ctx, invoice))
    return [line for line in moved if line]


def _remirror(ctx: PaymentContext, subscription: Subscription) -> str:
    return f"subscription {subscription.id}: {mirror_subscription(ctx, subscription)}"


def _repush(ctx: PaymentContext, invoice: Invoice) -> str:
    account = ctx.account(invoice.state.app_id, invoice.state.tenant_id)
    linked = account.provider_invoice(invoice.id) if account else None
    if account is None or linked is None:
        return ""  # never pushed: the Stripe worker or a `collect` repair pushes it
    pushed = replace_invoice(ctx, invoice, account.customer_id, linked)
    return f"invoice {invoice.id}: pushed again as {pushed}"


def _owed(invoice: Invoice) -> bool:
    return invoice.status is InvoiceStatus.OPEN and invoice.amount_due.amount > 0


def _found(ctx: PaymentContext, kind: type[A], found: list[UUID], app_id: str) -> list[A]:
    loaded = (ctx.find(kind, aggregate_id, app_id) for aggregate_id in found)
    return [aggregate for aggregate in loaded if aggregate is not None]


def _safely(move: Callable[[PaymentContext, Any], str], ctx: PaymentContext, item: Any) -> str:
    try:
        return move(ctx, item)
    except (ProviderRefused, DomainError) as error:
        return f"not moved: {error}"
