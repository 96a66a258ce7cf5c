"""Renew at period end by the clock (or cancel, if a cancel was scheduled)."""

from __future__ import annotations

from typing import Any

from commands.quotas.sync_from_plan import follow_subscription
from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class RenewSubscription(SubscriptionCommand):
    pass


def renew_subscription(command: RenewSubscription, uow: UnitOfWork) -> dict[str, Any]:
    subscription = command.load(uow)
    previous = subscription.state.terms
    subscription.renew(uow.cause)
    follow_subscription(uow, subscription, previous)
    return subscription_view(subscription)
