"""An app's billing settings: grace period of drafts, proration unit, dunning schedule."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.errors import InvalidValue
from domain.proration import ProrationUnit

DunningAction = Literal["cancel", "unpaid"]
MAX_GRACE_HOURS = 24 * 30


class BillingSettingsTerms(BaseModel):
    """The settings themselves; the defaults apply to an app that never set any."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grace_period_hours: int = Field(default=0, ge=0, le=MAX_GRACE_HOURS)
    proration_unit: ProrationUnit = "second"
    dunning_retry_days: list[int] = Field(default_factory=lambda: [1, 3, 5, 7], max_length=10)
    dunning_final_action: DunningAction = "cancel"

    @model_validator(mode="after")
    def _ascending(self) -> BillingSettingsTerms:
        days = self.dunning_retry_days
        if any(not 1 <= d <= 90 for d in days) or days != sorted(set(days)):
            raise InvalidValue(
                "retry days strictly ascend, each from 1 to 90", field="dunning_retry_days"
            )
        return self

    def finalize_at(self, drafted_at: datetime) -> datetime:
        """When a draft made at `drafted_at` finalizes by itself."""
        return drafted_at + timedelta(hours=self.grace_period_hours)

    def next_retry(self, first_failed_at: datetime, attempt: int) -> datetime | None:
        """After failed attempt N (1 = the first), when to try again; None = give up."""
        if attempt > len(self.dunning_retry_days):
            return None
        return first_failed_at + timedelta(days=self.dunning_retry_days[attempt - 1])


def billing_settings_id(app_id: str) -> UUID:
    return stable_id("billing-settings", app_id)


class BillingSettingsState(AggregateState):
    terms: BillingSettingsTerms


class BillingSettingsEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "billing_settings"
    terms: BillingSettingsTerms

    def apply(self, aggregate: Any) -> None:
        aggregate.state.terms = self.terms


class BillingSettingsDefined(BillingSettingsEvent, CreatedEvent):
    NAME: ClassVar[str] = "BillingSettingsDefined"

    def apply(self, aggregate: Any) -> None:
        aggregate.state = BillingSettingsState(app_id=self.app_id, terms=self.terms)


class BillingSettingsChanged(BillingSettingsEvent):
    NAME: ClassVar[str] = "BillingSettingsChanged"


class BillingSettings(Aggregate[BillingSettingsState]):
    """How one app bills: grace period, proration unit and dunning."""

    TYPE: ClassVar[str] = "billing_settings"
    State = BillingSettingsState

    @classmethod
    def define(cls, app_id: str, terms: BillingSettingsTerms, cause: Cause) -> BillingSettings:
        return cls._create(
            BillingSettingsDefined, billing_settings_id(app_id), cause, app_id=app_id, terms=terms
        )

    def change(self, terms: BillingSettingsTerms, cause: Cause) -> bool:
        """Record new settings; unchanged settings record nothing (returns False)."""
        if terms == self.state.terms:
            return False
        self._trigger(BillingSettingsChanged, cause, terms=terms)
        return True
