"""Record in the audit log what a provider webhook did (once per provider event id)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.base import ID_PATTERN, Command
from commands.unit_of_work import UnitOfWork
from domain.payment_account import PROVIDER
from domain.provider_webhook import ProviderWebhook, provider_webhook_id


class RecordProviderWebhook(Command):
    provider_event_id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=255)
    object_id: str | None = Field(default=None, max_length=255)
    outcome: str = Field(min_length=1, max_length=500)
    tenant_id: str | None = Field(default=None, pattern=ID_PATTERN)


def record_provider_webhook(command: RecordProviderWebhook, uow: UnitOfWork) -> dict[str, Any]:
    webhook_id = provider_webhook_id(PROVIDER, command.provider_event_id)
    if uow.find(ProviderWebhook, webhook_id) is None:
        uow.add(
            ProviderWebhook.processed(
                command.app_id,
                uow.cause,
                provider=PROVIDER,
                provider_event_id=command.provider_event_id,
                type=command.type,
                object_id=command.object_id,
                outcome=command.outcome,
                tenant_id=command.tenant_id,
            )
        )
    return {"provider_event_id": command.provider_event_id, "outcome": command.outcome}
