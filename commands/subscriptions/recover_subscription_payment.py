"""A past-due subscription was paid: back to active."""

from __future__ import annotations

from typing import Any

from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class RecoverSubscriptionPayment(SubscriptionCommand):
    pass


def recover_subscription_payment(
    command: RecoverSubscriptionPayment, uow: UnitOfWork
) -> dict[str, Any]:
    subscription = command.load(uow)
    subscription.recover_payment(uow.cause)
    return subscription_view(subscription)
