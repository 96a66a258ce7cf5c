"""Open the quota window containing now: usage starts over (absolute quotas never reset)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.quotas.target import QuotaCommand
from commands.quotas.view import quota_view
from commands.unit_of_work import UnitOfWork


class ResetQuota(QuotaCommand):
    only_if_ended: bool = Field(
        default=False, description="reset only when the window has ended (billing runs)"
    )


def reset_quota(command: ResetQuota, uow: UnitOfWork) -> dict[str, Any]:
    quota = command.load(uow)
    reset = not command.only_if_ended or quota.window_ended(uow.now)
    if reset:
        quota.reset(uow.cause)
    return {**quota_view(quota, uow.now), "reset": reset}
