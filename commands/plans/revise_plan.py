"""Publish a new version of a plan; existing subscribers stay on theirs until migrated."""

from __future__ import annotations

from typing import Any

from commands.base import Command
from commands.billing.strategies import NamedStrategies
from commands.meters.resolve import resolve_feature_meters
from commands.plans.terms_input import PlanTermsInput
from commands.unit_of_work import UnitOfWork
from domain.plan import Plan, plan_id


class RevisePlan(Command, PlanTermsInput):
    pass


def revise_plan(
    command: RevisePlan, uow: UnitOfWork, strategies: NamedStrategies | None = None
) -> dict[str, Any]:
    """Publish the revision; strategies its terms name must be registered plugins."""
    (strategies or NamedStrategies()).check(command.terms())
    plan = uow.get(
        Plan,
        plan_id(command.app_id, command.plan_key),
        field="plan_key",
        app_id=command.app_id,
        named=command.plan_key,
    )
    version = plan.revise(resolve_feature_meters(uow, command.app_id, command.terms()), uow.cause)
    return {"plan_id": str(plan.id), "plan_key": command.plan_key, "version": version}
