"""Resume a paused subscription."""

from __future__ import annotations

from typing import Any

from commands.quotas.sync_from_plan import follow_subscription
from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class ResumeSubscription(SubscriptionCommand):
    pass


def resume_subscription(command: ResumeSubscription, uow: UnitOfWork) -> dict[str, Any]:
    subscription = command.load(uow)
    previous = subscription.state.terms
    subscription.resume(uow.cause)
    follow_subscription(uow, subscription, previous)
    return subscription_view(subscription)
