"""Count usage against a quota, once per idempotency key; a refusal is an answer, not an error."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.quotas.target import QuotaCommand
from commands.unit_of_work import UnitOfWork
from domain.entitlement_grant import TenantGrants, tenant_grants_id
from domain.quota import MAX_AMOUNT


class ConsumeQuota(QuotaCommand):
    amount: int = Field(default=1, ge=1, le=MAX_AMOUNT)
    idempotency_key: str = Field(
        min_length=1, max_length=200, description="a retried usage event is counted once"
    )


def consume_quota(command: ConsumeQuota, uow: UnitOfWork) -> dict[str, Any]:
    """Roll the window over if the clock passed its end, then consume. The reply is the
    outcome (allowed false for a refusal; the QuotaExceeded event is still saved)."""
    quota = command.load(uow)
    if quota.window_ended(uow.now):
        quota.reset(uow.cause)
    granted = not quota.state.enabled and _feature_granted(command, uow)
    outcome = quota.consume(command.amount, command.idempotency_key, uow.cause, granted=granted)
    state = quota.state
    return {
        **outcome.model_dump(mode="json"),
        "quota_id": str(quota.id),
        "tenant_id": state.tenant_id,
        "feature_key": state.feature_key,
        "window": state.window.model_dump(mode="json") if state.window else None,
    }


def _feature_granted(command: ConsumeQuota, uow: UnitOfWork) -> bool:
    """A live manual grant of the feature (support override) keeps a suspended quota counting."""
    grants = uow.find(TenantGrants, tenant_grants_id(command.app_id, command.tenant_id))
    return grants is not None and command.feature_key in grants.active_grants(uow.now)
