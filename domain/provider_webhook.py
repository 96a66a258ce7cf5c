"""A payment provider's webhook as the audit log keeps it: which event, of which type, about
which object, and what Tally did with it (one aggregate per provider event id: once)."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, stable_id


def provider_webhook_id(provider: str, event_id: str) -> UUID:
    return stable_id("provider-webhook", provider, event_id)


class ProviderWebhookState(AggregateState):
    provider: str
    provider_event_id: str
    type: str
    object_id: str | None
    outcome: str


class ProviderWebhookProcessed(CreatedEvent):
    NAME: ClassVar[str] = "ProviderWebhookProcessed"
    AGGREGATE_TYPE: ClassVar[str] = "provider_webhook"
    provider: str
    provider_event_id: str
    type: str
    object_id: str | None = None
    outcome: str

    def apply(self, aggregate: Any) -> None:
        aggregate.state = ProviderWebhookState(
            app_id=self.app_id,
            tenant_id=self.tenant_id,
            provider=self.provider,
            provider_event_id=self.provider_event_id,
            type=self.type,
            object_id=self.object_id,
            outcome=self.outcome,
        )


class ProviderWebhook(Aggregate[ProviderWebhookState]):
    """One processed provider event: recorded once, never changed."""

    TYPE: ClassVar[str] = "provider_webhook"
    State = ProviderWebhookState

    @classmethod
    def processed(cls, app_id: str, cause: Cause, **fields: Any) -> ProviderWebhook:
        return cls._create(
            ProviderWebhookProcessed,
            provider_webhook_id(fields["provider"], fields["provider_event_id"]),
            cause,
            app_id=app_id,
            **fields,
        )
