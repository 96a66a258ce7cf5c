"""Renew at period end by the clock (or cancel, if a cancel was scheduled)."""

from __future__ import annotations

from typing import Any

from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class RenewSubscription(SubscriptionCommand):
    pass


def renew_subscription(command: RenewSubscription, uow: UnitOfWork) -> dict[str, Any]:
    subscription = command.load(uow)
    subscription.renew(uow.cause)
    return subscription_view(subscription)
