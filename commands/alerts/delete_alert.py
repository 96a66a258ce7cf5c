"""Delete an alert: it never fires again (what it fired stays on record)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.alerts.view import alert_view
from commands.base import Command
from commands.unit_of_work import UnitOfWork
from domain.alert import Alert
from domain.errors import NotFound


class DeleteAlert(Command):
    alert_id: UUID

    def concurrency_key(self) -> str:
        return f"{self.app_id}/alert/{self.alert_id}"


def delete_alert(command: DeleteAlert, uow: UnitOfWork) -> dict[str, Any]:
    """404 for unknown ids, other apps' ids and alerts already deleted."""
    alert = uow.get(Alert, command.alert_id, field="alert_id", app_id=command.app_id)
    if alert.deleted:
        raise NotFound(f"alert {command.alert_id} not found (deleted)", field="alert_id")
    alert.delete(uow.cause)
    return alert_view(alert)
