"""End a trial now: the first paid period starts."""

from __future__ import annotations

from typing import Any

from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class EndTrial(SubscriptionCommand):
    pass


def end_trial(command: EndTrial, uow: UnitOfWork) -> dict[str, Any]:
    subscription = command.load(uow)
    subscription.end_trial(uow.cause)
    return subscription_view(subscription)
