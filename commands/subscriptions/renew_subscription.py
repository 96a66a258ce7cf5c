"""Renew at period end by the clock (or cancel, if a cancel was scheduled)."""

from __future__ import annotations

from typing import Any

from commands.quotas.sync_from_plan import sync_quotas_from_plan
from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork


class RenewSubscription(SubscriptionCommand):
    pass


def renew_subscription(command: RenewSubscription, uow: UnitOfWork) -> dict[str, Any]:
    subscription = command.load(uow)
    previous = subscription.state.terms
    subscription.renew(uow.cause)
    state = subscription.state
    if subscription.is_live() and state.terms != previous:
        sync_quotas_from_plan(
            uow,
            app_id=command.app_id,
            tenant_id=state.tenant_id,
            subscription_id=subscription.id,
            terms=state.terms,
            anchor=state.current_period.start,
            previous=previous,
        )
    return subscription_view(subscription)
