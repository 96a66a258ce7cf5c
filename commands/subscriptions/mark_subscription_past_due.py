"""A payment failed: the subscription is past due while dunning retries."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class MarkSubscriptionPastDue(SubscriptionCommand):
    reason: str | None = Field(default=None, max_length=500)


def mark_subscription_past_due(command: MarkSubscriptionPastDue, uow: UnitOfWork) -> dict[str, Any]:
    subscription = command.load(uow)
    subscription.mark_past_due(uow.cause, command.reason)
    return subscription_view(subscription)
