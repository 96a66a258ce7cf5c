"""Commands that act on one existing subscription share its id field and loading."""

from __future__ import annotations

from uuid import UUID

from commands.base import Command
from commands.unit_of_work import UnitOfWork
from domain.subscription import Subscription


class SubscriptionCommand(Command):
    subscription_id: UUID

    def concurrency_key(self) -> str:
        return f"{self.app_id}/subscription/{self.subscription_id}"

    def load(self, uow: UnitOfWork) -> Subscription:
        return uow.get(
            Subscription, self.subscription_id, field="subscription_id", app_id=self.app_id
        )
