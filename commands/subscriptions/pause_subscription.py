"""Pause an active subscription: no renewals until resumed."""

from __future__ import annotations

from typing import Any

from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class PauseSubscription(SubscriptionCommand):
    pass


def pause_subscription(command: PauseSubscription, uow: UnitOfWork) -> dict[str, Any]:
    subscription = command.load(uow)
    subscription.pause(uow.cause)
    return subscription_view(subscription)
