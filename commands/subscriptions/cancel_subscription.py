"""Cancel now, or schedule the cancel for the end of the current period.

A cancel now with `proration` "create_prorations" credits the unused time of a fee paid in
advance on the final invoice ("always_invoice": on an invoice at once); the default "none"
credits nothing, as Stripe's cancel does unless asked.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.billing.compose import BillingPorts, settings_of
from commands.quotas.sync_from_plan import follow_subscription
from commands.subscriptions.change_plan import with_proration_invoice
from commands.subscriptions.target import SubscriptionCommand
from commands.unit_of_work import UnitOfWork
from domain.proration import ProrationMode


class CancelSubscription(SubscriptionCommand):
    at_period_end: bool = False
    reason: str | None = Field(default=None, max_length=500)
    proration: ProrationMode = "none"


def cancel_subscription(
    command: CancelSubscription, uow: UnitOfWork, ports: BillingPorts | None = None
) -> dict[str, Any]:
    subscription = command.load(uow)
    previous = subscription.state.terms
    subscription.cancel(
        uow.cause,
        at_period_end=command.at_period_end,
        reason=command.reason,
        proration=command.proration,
        unit=settings_of(uow, command.app_id).proration_unit,
    )
    follow_subscription(uow, subscription, previous)
    return with_proration_invoice(uow, subscription, command.proration, ports)
