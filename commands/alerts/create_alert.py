"""Create an alert: usage thresholds on one metered feature (percent of the effective limit
or units), spend thresholds or credit-balance thresholds (amounts), for one tenant or every
tenant of the app."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from pydantic import Field, model_validator

from commands.alerts.view import alert_view
from commands.base import ID_PATTERN, Command
from commands.unit_of_work import UnitOfWork
from domain.alert import MAX_THRESHOLDS, Alert, AlertKind, Threshold, alert_id, check_terms
from domain.catalog import KEY_PATTERN
from domain.errors import AlreadyExists


class CreateAlert(Command):
    alert_key: str | None = Field(
        default=None,
        pattern=KEY_PATTERN,
        description="your own key for the alert (its id derives from it); generated if absent",
    )
    tenant_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="the tenant watched; absent = every tenant"
    )
    kind: AlertKind
    feature_key: str | None = Field(
        default=None, pattern=KEY_PATTERN, description="the metered feature (usage alerts only)"
    )
    thresholds: list[Threshold] = Field(
        min_length=1,
        max_length=MAX_THRESHOLDS,
        description='distinct; usage: {"percent": 80} or {"units": 1000}; spend and '
        'credit_balance: {"amount": {"amount": 5000, "currency": "USD"}}',
    )

    @model_validator(mode="after")
    def _terms(self) -> CreateAlert:
        check_terms(self.kind, self.feature_key, self.thresholds)
        return self


def create_alert(command: CreateAlert, uow: UnitOfWork) -> dict[str, Any]:
    key = command.alert_key or uuid4().hex
    if uow.find(Alert, alert_id(command.app_id, key)) is not None:
        raise AlreadyExists(f"alert {key} already exists", field="alert_key")
    alert = uow.add(
        Alert.create(
            command.app_id,
            key,
            uow.cause,
            kind=command.kind,
            thresholds=command.thresholds,
            tenant_id=command.tenant_id,
            feature_key=command.feature_key,
        )
    )
    return alert_view(alert)
