"""TenantGrants aggregate: manual feature grants (support overrides) for one tenant of an app.

A grant turns ANY feature on for the tenant, whether or not its plan has it (boolean features
not on the plan included), until `expires_at` (None = until revoked), with a required reason;
the actor comes from the Cause, as on every event. One TenantGrants per (app, tenant), with a
stable id, so concurrent grants for one tenant serialize on its version.

Granting a feature that already has a grant replaces that grant (a new reason, expiry or
limit). Revoking takes it back; the plan's answer applies again.

These grants decide *access* (the entitlement answer). Extra units on a metered quota are a
different override: `grant_allowance` on the Quota, which its consumes enforce.

The first FeatureGranted creates the aggregate; later ones change it (one event type for
projectors either way). Events carry the whole grant, so projectors never load the aggregate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.catalog import validate_key
from domain.errors import InvalidValue, NotFound
from domain.quota import MAX_AMOUNT


def tenant_grants_id(app_id: str, tenant_id: str) -> UUID:
    return stable_id("tenant-grants", app_id, tenant_id)


class FeatureGrant(BaseModel):
    """One feature turned on by hand, with who, why and until when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature_key: str
    reason: str
    actor: str
    granted_at: datetime
    expires_at: datetime | None = None
    limit: int | None = None

    def active_at(self, instant: datetime) -> bool:
        return self.expires_at is None or self.expires_at > instant


class TenantGrantsState(AggregateState):
    tenant_id: str
    grants: dict[str, FeatureGrant] = Field(default_factory=dict)


class TenantGrantsEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "tenant_grants"
    feature_key: str


class FeatureGranted(TenantGrantsEvent, CreatedEvent):
    """A feature was granted (or its grant replaced); the first one creates the aggregate."""

    NAME: ClassVar[str] = "FeatureGranted"
    reason: str
    expires_at: datetime | None = None
    limit: int | None = None

    def mutate(self, aggregate: Any) -> Any:
        if aggregate is None:
            return super().mutate(aggregate)  # CreatedEvent: builds the aggregate
        return DomainEvent.mutate(self, aggregate)

    def apply(self, aggregate: Any) -> None:
        if getattr(aggregate, "state", None) is None:
            aggregate.state = TenantGrantsState(app_id=self.app_id, tenant_id=self.tenant_id or "")
        aggregate.state.grants[self.feature_key] = FeatureGrant(
            feature_key=self.feature_key,
            reason=self.reason,
            actor=self.actor,
            granted_at=self.timestamp,
            expires_at=self.expires_at,
            limit=self.limit,
        )


class FeatureGrantRevoked(TenantGrantsEvent):
    NAME: ClassVar[str] = "FeatureGrantRevoked"
    reason: str

    def apply(self, aggregate: Any) -> None:
        aggregate.state.grants.pop(self.feature_key, None)


class TenantGrants(Aggregate[TenantGrantsState]):
    """The manual feature grants of one tenant of an app."""

    TYPE: ClassVar[str] = "tenant_grants"
    State = TenantGrantsState

    @classmethod
    def open(
        cls,
        app_id: str,
        tenant_id: str,
        feature_key: str,
        reason: str,
        cause: Cause,
        *,
        expires_at: datetime | None = None,
        limit: int | None = None,
    ) -> TenantGrants:
        """The tenant's first grant: creates its TenantGrants."""
        return cls._create(
            FeatureGranted,
            tenant_grants_id(app_id, tenant_id),
            cause,
            app_id=app_id,
            tenant_id=tenant_id,
            **_checked_grant(feature_key, reason, expires_at, limit, cause),
        )

    def grant(
        self,
        feature_key: str,
        reason: str,
        cause: Cause,
        *,
        expires_at: datetime | None = None,
        limit: int | None = None,
    ) -> None:
        """Grant a feature, replacing any grant it already has."""
        self._trigger(
            FeatureGranted, cause, **_checked_grant(feature_key, reason, expires_at, limit, cause)
        )

    def revoke(self, feature_key: str, reason: str, cause: Cause) -> None:
        """Take a grant back (expired ones too); NotFound naming feature_key if none."""
        if feature_key not in self.state.grants:
            raise NotFound(
                f"tenant {self.state.tenant_id} has no grant for feature {feature_key}",
                field="feature_key",
            )
        self._trigger(
            FeatureGrantRevoked, cause, feature_key=feature_key, reason=_require_reason(reason)
        )

    def grant_for(self, feature_key: str) -> FeatureGrant | None:
        return self.state.grants.get(feature_key)

    def active_grants(self, now: datetime) -> dict[str, FeatureGrant]:
        return {k: g for k, g in self.state.grants.items() if g.active_at(now)}


def _checked_grant(
    feature_key: str,
    reason: str,
    expires_at: datetime | None,
    limit: int | None,
    cause: Cause,
) -> dict[str, Any]:
    validate_key(feature_key, "feature_key")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidValue("expires_at must carry a timezone", field="expires_at")
        if expires_at <= cause.occurred_at:
            raise InvalidValue("expires_at must be in the future", field="expires_at")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_AMOUNT
    ):
        raise InvalidValue(f"limit must be a whole number from 0 to {MAX_AMOUNT}", field="limit")
    return {
        "feature_key": feature_key,
        "reason": _require_reason(reason),
        "expires_at": expires_at,
        "limit": limit,
    }


def _require_reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidValue("a reason is required", field="reason")
    return reason.strip()
