"""Pause an active subscription: no renewals until resumed."""

from __future__ import annotations

from typing import Any

from commands.quotas.sync_from_plan import follow_subscription
from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class PauseSubscription(SubscriptionCommand):
    pass


def pause_subscription(command: PauseSubscription, uow: UnitOfWork) -> dict[str, Any]:
    subscription = command.load(uow)
    previous = subscription.state.terms
    subscription.pause(uow.cause)
    follow_subscription(uow, subscription, previous)
    return subscription_view(subscription)
