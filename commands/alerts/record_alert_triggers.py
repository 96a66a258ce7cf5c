"""Record what the alert evaluator observed: the alert fires each threshold the observations
cross for the first time in their period. Internal: run by the evaluator's own bus
(adapters/alerts/), not listed on the public command bus."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from commands.base import Command
from commands.unit_of_work import UnitOfWork
from domain.alert import Alert, Observation


class RecordAlertTriggers(Command):
    alert_id: UUID
    observations: list[Observation] = Field(min_length=1)

    def concurrency_key(self) -> str:
        return f"{self.app_id}/alert/{self.alert_id}"


def record_alert_triggers(command: RecordAlertTriggers, uow: UnitOfWork) -> dict[str, Any]:
    """How many thresholds fired; none for an unknown or deleted alert (never an error:
    the alert may have been deleted after the usage the evaluator read)."""
    alert = uow.find(Alert, command.alert_id)
    if alert is None or alert.state.app_id != command.app_id:
        return {"alert_id": str(command.alert_id), "fired": 0}
    fired = [event for obs in command.observations for event in alert.observe(obs, uow.cause)]
    return {"alert_id": str(alert.id), "fired": len(fired)}
