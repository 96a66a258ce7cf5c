"""Set a tenant's quota for a metered feature explicitly (outside of, or overriding, a plan)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from commands.quotas.target import QuotaCommand
from commands.quotas.view import quota_view
from commands.unit_of_work import UnitOfWork
from domain.catalog import (
    DEFAULT_SOFT_THRESHOLD_PERCENT,
    Enforcement,
    FeatureKind,
    FeatureSpec,
    Meter,
    QuotaPeriod,
)
from domain.quota import Quota, quota_id


class ConfigureQuota(QuotaCommand):
    limit: int | None = Field(default=None, ge=0, description="None = unlimited")
    enforcement: Enforcement = Enforcement.HARD
    soft_threshold_percent: int = Field(default=DEFAULT_SOFT_THRESHOLD_PERCENT, ge=1, le=100)
    period: QuotaPeriod = QuotaPeriod.MONTH
    meter: Meter = Meter.SUM
    subscription_id: UUID | None = None


def configure_quota(command: ConfigureQuota, uow: UnitOfWork) -> dict[str, Any]:
    """Create the quota (windows counted from now), or reconfigure the existing one."""
    spec = FeatureSpec(
        key=command.feature_key,
        kind=FeatureKind.METERED,
        limit=command.limit,
        period=command.period,
        enforcement=command.enforcement,
        soft_threshold_percent=command.soft_threshold_percent,
        meter=command.meter,
    )
    quota = uow.find(Quota, quota_id(command.app_id, command.tenant_id, command.feature_key))
    if quota is None:
        quota = uow.add(
            Quota.configure(
                command.app_id, command.tenant_id, spec, command.subscription_id, uow.now, uow.cause
            )
        )
    else:
        quota.reconfigure(spec, command.subscription_id, uow.cause)
    return quota_view(quota, uow.now)
