"""Archive a plan: no new subscribers; existing ones keep it."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.base import Command
from commands.unit_of_work import UnitOfWork
from domain.catalog import KEY_PATTERN
from domain.plan import Plan, plan_id


class ArchivePlan(Command):
    plan_key: str = Field(pattern=KEY_PATTERN)


def archive_plan(command: ArchivePlan, uow: UnitOfWork) -> dict[str, Any]:
    plan = uow.get(
        Plan,
        plan_id(command.app_id, command.plan_key),
        field="plan_key",
        app_id=command.app_id,
        named=command.plan_key,
    )
    plan.archive(uow.cause)
    return {"plan_key": command.plan_key, "archived": True}
