"""Open the quota window containing now: usage starts over (absolute quotas never reset)."""

from __future__ import annotations

from typing import Any

from commands.quotas.target import QuotaCommand
from commands.quotas.view import quota_view
from commands.unit_of_work import UnitOfWork


class ResetQuota(QuotaCommand):
    pass


def reset_quota(command: ResetQuota, uow: UnitOfWork) -> dict[str, Any]:
    quota = command.load(uow)
    quota.reset(uow.cause)
    return quota_view(quota, uow.now)
