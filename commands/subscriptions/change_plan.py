"""Move a subscription to another plan: now (prorated by billing) or at the period end."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.quotas.sync_from_plan import follow_subscription
from commands.subscriptions.target import SubscriptionCommand
from commands.subscriptions.view import subscription_view
from commands.unit_of_work import UnitOfWork
from domain.catalog import KEY_PATTERN, PlanTerms
from domain.plan import Plan, plan_id
from domain.subscription import ChangeTiming


class ChangePlan(SubscriptionCommand):
    plan_key: str = Field(pattern=KEY_PATTERN)
    plan_version: int | None = Field(default=None, ge=1, description="default: latest")
    timing: ChangeTiming = "now"


def change_plan(command: ChangePlan, uow: UnitOfWork) -> dict[str, Any]:
    subscription = command.load(uow)
    previous = subscription.state.terms
    subscription.change_plan(_target_terms(command, uow), uow.cause, command.timing)
    if command.timing == "now":
        follow_subscription(uow, subscription, previous)
    return subscription_view(subscription)


def _target_terms(command: ChangePlan, uow: UnitOfWork) -> PlanTerms:
    plan = uow.get(
        Plan, plan_id(command.app_id, command.plan_key), field="plan_key", app_id=command.app_id
    )
    latest = plan.terms_for_new_subscriber(command.load(uow).state.tenant_id)  # archived? custom?
    return latest if command.plan_version is None else plan.terms(command.plan_version)
