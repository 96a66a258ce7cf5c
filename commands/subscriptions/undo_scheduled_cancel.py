"""Take back a cancel scheduled for the period end."""

from __future__ import annotations

from typing import Any

from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class UndoScheduledCancel(SubscriptionCommand):
    pass


def undo_scheduled_cancel(command: UndoScheduledCancel, uow: UnitOfWork) -> dict[str, Any]:
    subscription = command.load(uow)
    subscription.undo_cancel(uow.cause)
    return subscription_view(subscription)
