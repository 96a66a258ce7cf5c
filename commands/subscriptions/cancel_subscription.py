"""Cancel now, or schedule the cancel for the end of the current period."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.quotas.sync_from_plan import follow_subscription
from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class CancelSubscription(SubscriptionCommand):
    at_period_end: bool = False
    reason: str | None = Field(default=None, max_length=500)


def cancel_subscription(command: CancelSubscription, uow: UnitOfWork) -> dict[str, Any]:
    subscription = command.load(uow)
    previous = subscription.state.terms
    subscription.cancel(uow.cause, at_period_end=command.at_period_end, reason=command.reason)
    follow_subscription(uow, subscription, previous)
    return subscription_view(subscription)
