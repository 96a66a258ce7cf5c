"""Invoice a subscription's billing point that fell due (at most one per command).

The invoice id derives from the subscription and the point, and the subscription records
the point in the same transaction: a second run finds nothing due, and two concurrent runs
collide on the subscription's version, so the loser retries and finds nothing to do. With
no grace period (the default) the invoice is finalized at once, numbered gap-free.
"""

from __future__ import annotations

from typing import Any

from commands.billing.compose import BillingPorts, compose
from commands.billing.issue import issue_invoice
from commands.billing.ports import UsageCutoff
from commands.bus import Handler
from commands.invoices.view import invoice_view
from commands.subscriptions.target import SubscriptionCommand
from commands.unit_of_work import UnitOfWork
from domain.billing import (
    BillingPoint,
    commitment_basis,
    next_billing_point,
    subscription_invoice_id,
)
from domain.invoice import Invoice
from domain.recompute import adjustments_of, billed_usage
from domain.subscription import Subscription


class InvoiceSubscription(SubscriptionCommand):
    usage_cutoff: UsageCutoff = None


def invoice_subscription_handler(ports: BillingPorts) -> Handler:
    """The handler, wired with the usage reader (bootstrap)."""

    def invoice_subscription(command: InvoiceSubscription, uow: UnitOfWork) -> dict[str, Any]:
        subscription = command.load(uow)
        invoice = invoice_due_point(uow, subscription, ports, command.usage_cutoff)
        return {
            "subscription_id": str(subscription.id),
            "invoiced": invoice is not None,
            "point": invoice["billing_point"] if invoice else None,
            "invoice": invoice,
        }

    return invoice_subscription


def invoice_due_point(
    uow: UnitOfWork, subscription: Subscription, ports: BillingPorts, cutoff: int | None
) -> dict[str, Any] | None:
    """Invoice the subscription's billing point that fell due, if any; the invoice's view."""
    point = next_billing_point(subscription.state)
    if point is None or point.at > uow.now:
        return None
    cut = ports.usage.safe_cutoff() if cutoff is None else cutoff
    invoice = draft_point_invoice(uow, subscription, point, ports, cut)
    if invoice is None:
        return None
    return {**invoice_view(invoice), "billing_point": point.at.isoformat()}


def draft_point_invoice(
    uow: UnitOfWork,
    subscription: Subscription,
    point: BillingPoint,
    ports: BillingPorts,
    cutoff: int | None,
) -> Invoice | None:
    """Draft (and, without a grace period, finalize) the point's invoice; a point with
    nothing to bill is recorded as done without an invoice."""
    state = subscription.state
    invoice_id = subscription_invoice_id(state.app_id, subscription.id, point.at)
    composed = compose(uow, subscription, point, ports, cutoff=cutoff, invoice_id=invoice_id)
    subscription.record_invoice(
        invoice_id,
        uow.cause,
        point.at,
        composed.prorations_billed,
        usage=billed_usage(
            invoice_id, composed.lines, cutoff, commitment_basis(subscription.state, point)
        ),
        adjustments=adjustments_of(composed.lines) + composed.credited,
    )
    if not composed.lines:
        return None
    origin = "final" if point.kind == "final" else "subscription"
    return issue_invoice(
        uow,
        subscription,
        invoice_id,
        composed.lines,
        period=point.period,
        origin=origin,
        cutoff=cutoff,
    )
