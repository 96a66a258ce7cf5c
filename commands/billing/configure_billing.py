"""Set an app's billing settings: grace period of drafts, proration unit and dunning."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.base import Command
from commands.unit_of_work import UnitOfWork
from domain.billing_settings import (
    MAX_GRACE_HOURS,
    BillingSettings,
    BillingSettingsTerms,
    DunningAction,
    billing_settings_id,
)
from domain.proration import ProrationUnit


class ConfigureBilling(Command):
    grace_period_hours: int = Field(default=0, ge=0, le=MAX_GRACE_HOURS)
    proration_unit: ProrationUnit = "second"
    dunning_retry_days: list[int] = Field(default_factory=lambda: [1, 3, 5, 7], max_length=10)
    dunning_final_action: DunningAction = "cancel"

    def concurrency_key(self) -> str:
        return f"{self.app_id}/billing-settings"


def configure_billing(command: ConfigureBilling, uow: UnitOfWork) -> dict[str, Any]:
    terms = BillingSettingsTerms(
        grace_period_hours=command.grace_period_hours,
        proration_unit=command.proration_unit,
        dunning_retry_days=command.dunning_retry_days,
        dunning_final_action=command.dunning_final_action,
    )
    settings = uow.find(BillingSettings, billing_settings_id(command.app_id))
    if settings is None:
        settings = uow.add(BillingSettings.define(command.app_id, terms, uow.cause))
    else:
        settings.change(terms, uow.cause)
    return settings_view(settings.state.terms)


def settings_view(terms: BillingSettingsTerms) -> dict[str, Any]:
    return terms.model_dump(mode="json")
