"""Count usage against a quota, once per idempotency key; a refusal is an answer, not an error.

The command form of one plain usage event (the NATS bus, POST /v1/commands/consume_quota,
group commits). Like the usage ingest, it asks the database whether the key was counted
and saves the key with the quota's events, in the same transaction.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from commands.quotas.target import QuotaCommand
from commands.unit_of_work import UnitOfWork
from commands.usage.ports import UsageKeys
from domain.entitlement_grant import FeatureGrant, TenantGrants, tenant_grants_id
from domain.quota import MAX_AMOUNT, Quota, quota_id
from domain.usage_batch import HARD_LIMIT_EXCEEDED


class ConsumeQuota(QuotaCommand):
    amount: int = Field(default=1, ge=1, le=MAX_AMOUNT, strict=True)
    idempotency_key: str = Field(
        min_length=1, max_length=200, description="a retried usage event is counted once"
    )

    def aggregates_to_load(self) -> list[UUID]:
        """The quota and the tenant's feature grants (which may not exist)."""
        return [
            quota_id(self.app_id, self.tenant_id, self.feature_key),
            tenant_grants_id(self.app_id, self.tenant_id),
        ]


def consume_quota_handler(keys: UsageKeys) -> Any:
    """The handler, with the port that knows the keys already counted. In a group commit,
    the first consume asks about the keys of every consume of the batch in one query."""

    def consume_quota(command: ConsumeQuota, uow: UnitOfWork) -> dict[str, Any]:
        """Roll the window over if the clock passed its end, then consume. The reply is the
        outcome (allowed false for a refusal; the QuotaExceeded event is still saved)."""
        quota = command.load(uow)
        key, app_id = command.idempotency_key, command.app_id
        if quota.window_ended(uow.now):
            quota.reset(uow.cause)
        grant = _live_grant(command, uow)
        limit = grant.limit if grant is not None else None  # a grant's limit governs
        if key in _counted(keys, command, uow):
            duplicate = quota.outcome(uow.now, allowed=True, duplicate=True, grant_limit=limit)
            return _reply(quota, duplicate.model_dump(mode="json"))
        granted = not quota.state.enabled and grant is not None
        refusal = quota.refusal(command.amount, uow.now, granted, limit)
        refused_before = refusal == HARD_LIMIT_EXCEEDED and bool(keys.refused(app_id, [key]))
        outcome = quota.consume(
            command.amount,
            key,
            uow.cause,
            granted=granted,
            refused_before=refused_before,
            grant_limit=limit,
        )
        row = [(app_id, key, uow.now)]
        if outcome.allowed:
            uow.record_rows("usage_keys", row)
            if "commands" in uow.batch:  # a later repeat in the batch is a duplicate
                _counted(keys, command, uow).add(key)
        elif outcome.reason == HARD_LIMIT_EXCEEDED and not refused_before:
            uow.record_rows("usage_refusals", row)
        return _reply(quota, outcome.model_dump(mode="json"))

    return consume_quota


def _counted(keys: UsageKeys, command: ConsumeQuota, uow: UnitOfWork) -> set[str]:
    """The keys already counted among this command's (or, in a group commit, among every
    consume of the batch, asked once and kept for the batch)."""
    batch = uow.batch
    if "commands" not in batch:
        return keys.counted(command.app_id, [command.idempotency_key])
    by_app: dict[str, set[str]] = batch.setdefault("counted_usage_keys", {})
    if command.app_id not in by_app:  # a batch may hold several apps' commands
        wanted = [
            c.idempotency_key
            for c in batch["commands"]
            if isinstance(c, ConsumeQuota) and c.app_id == command.app_id
        ]
        by_app[command.app_id] = keys.counted(command.app_id, wanted)
    return by_app[command.app_id]


def _reply(quota: Quota, outcome: dict[str, Any]) -> dict[str, Any]:
    state = quota.state
    return {
        **outcome,
        "quota_id": str(quota.id),
        "tenant_id": state.tenant_id,
        "feature_key": state.feature_key,
        "window": state.window.model_dump(mode="json") if state.window else None,
    }


def _live_grant(command: ConsumeQuota, uow: UnitOfWork) -> FeatureGrant | None:
    """The live manual grant of the feature (support override), if any: it keeps a suspended
    quota counting, and its limit, when it has one, replaces the plan's (as in the check)."""
    grants = uow.find(TenantGrants, tenant_grants_id(command.app_id, command.tenant_id))
    return None if grants is None else grants.active_grants(uow.now).get(command.feature_key)
