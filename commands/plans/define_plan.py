"""Define a new plan in an app's catalog (version 1)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.base import ID_PATTERN, Command
from commands.billing.strategies import NamedStrategies
from commands.meters.resolve import resolve_feature_meters
from commands.plans.terms_input import PlanTermsInput
from commands.unit_of_work import UnitOfWork
from domain.errors import AlreadyExists
from domain.plan import Plan, plan_id


class DefinePlan(Command, PlanTermsInput):
    custom_for_tenant: str | None = Field(
        default=None, pattern=ID_PATTERN, description="an enterprise plan only this tenant sees"
    )


def define_plan(
    command: DefinePlan, uow: UnitOfWork, strategies: NamedStrategies | None = None
) -> dict[str, Any]:
    """Define the plan; strategies its terms name must be registered plugins."""
    (strategies or NamedStrategies()).check(command.terms())
    if uow.find(Plan, plan_id(command.app_id, command.plan_key)) is not None:
        raise AlreadyExists(f"plan {command.plan_key} already exists", field="plan_key")
    terms = resolve_feature_meters(uow, command.app_id, command.terms())
    plan = uow.add(Plan.define(command.app_id, terms, uow.cause, command.custom_for_tenant))
    return {"plan_id": str(plan.id), "plan_key": command.plan_key, "version": 1}
