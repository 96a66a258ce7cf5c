"""Move a subscription to another plan: now (prorated by billing) or at the period end."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.quotas.sync_from_plan import sync_quotas_from_plan
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
        state = subscription.state
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


def _target_terms(command: ChangePlan, uow: UnitOfWork) -> PlanTerms:
    plan = uow.get(
        Plan, plan_id(command.app_id, command.plan_key), field="plan_key", app_id=command.app_id
    )
    if command.plan_version is not None:
        return plan.terms(command.plan_version)
    return plan.terms_for_new_subscriber(command.load(uow).state.tenant_id)
