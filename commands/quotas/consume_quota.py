"""Count usage against a quota, once per idempotency key; a refusal is an answer, not an error.

The command form of one usage event (the NATS bus and POST /v1/commands/consume_quota): it
goes through the usage ingest like POST /v1/usage, so the database counts its key once.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.quotas.target import QuotaCommand
from commands.unit_of_work import UnitOfWork
from commands.usage.record_usage import UsageEventIn, UsageIngest
from domain.errors import NotFound
from domain.quota import MAX_AMOUNT


class ConsumeQuota(QuotaCommand):
    amount: int = Field(default=1, ge=1, le=MAX_AMOUNT, strict=True)
    idempotency_key: str = Field(
        min_length=1, max_length=200, description="a retried usage event is counted once"
    )


def consume_quota_handler(usage: UsageIngest) -> Any:
    """The handler, recording through the usage ingest (its own transaction)."""

    def consume_quota(command: ConsumeQuota, uow: UnitOfWork) -> dict[str, Any]:
        event = UsageEventIn(
            idempotency_key=command.idempotency_key,
            tenant_id=command.tenant_id,
            feature_key=command.feature_key,
            quantity=command.amount,
        )
        result = usage.record(command.app_id, [event], actor=command.actor)["results"][0]
        if result["status"] == "failed":
            raise NotFound(result["error"]["message"], field="feature_key")
        return {
            **{k: v for k, v in result.items() if k not in ("index", "idempotency_key", "status")},
            "duplicate": result["status"] == "duplicate",
            "tenant_id": command.tenant_id,
            "feature_key": command.feature_key,
        }

    return consume_quota
