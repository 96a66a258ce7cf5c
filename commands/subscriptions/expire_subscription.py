"""End a subscription for good (unpaid, or a fixed term is over)."""

from __future__ import annotations

from typing import Any

from commands.quotas.sync_from_plan import follow_subscription
from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class ExpireSubscription(SubscriptionCommand):
    pass


def expire_subscription(command: ExpireSubscription, uow: UnitOfWork) -> dict[str, Any]:
    subscription = command.load(uow)
    previous = subscription.state.terms
    subscription.expire(uow.cause)
    follow_subscription(uow, subscription, previous)
    return subscription_view(subscription)
