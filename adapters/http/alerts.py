"""Alerts: create (write), list with what fired (read), delete (write) (docs/alerts.md).

An alert watches one tenant or every tenant of the app: usage thresholds on one metered
feature (`{"percent": 80}` of the effective limit, `{"units": 1000}`), spend thresholds
(`{"amount": Money}` of the upcoming invoice's total) or credit-balance thresholds (fired when
the balance falls to or below the amount). Each threshold fires once per period as an
AlertTriggered event; the list comes from the alerts read model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from adapters.http.auth import Reader, Writer
from adapters.http.common import body_model, fields_of, run_command, run_query
from adapters.http.errors import ERROR_RESPONSES
from commands.alerts.create_alert import CreateAlert
from commands.alerts.delete_alert import DeleteAlert
from commands.base import ID_PATTERN

if TYPE_CHECKING:
    CreateBody = BaseModel
else:
    CreateBody = body_model(CreateAlert, "CreateAlertBody")

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, summary="Create a usage, spend or credit-balance alert")
def create_alert(request: Request, principal: Writer, body: CreateBody) -> JSONResponse:
    return run_command(request, principal, CreateAlert, fields_of(body), created=True)


@router.get("", summary="The app's alerts, oldest first, each with every time it fired")
def list_alerts(
    request: Request,
    principal: Reader,
    tenant_id: Annotated[
        str | None,
        Query(pattern=ID_PATTERN, description="only alerts watching this tenant, its triggers"),
    ] = None,
    include_deleted: Annotated[bool, Query(description="deleted alerts too")] = False,
) -> dict[str, Any]:
    found = run_query(
        request,
        "alerts",
        app_id=principal.app_id,
        tenant_id=tenant_id,
        include_deleted=include_deleted,
    )
    return {"alerts": found}


@router.delete("/{alert_id}", summary="Delete an alert: it never fires again")
def delete_alert(request: Request, principal: Writer, alert_id: UUID) -> JSONResponse:
    return run_command(request, principal, DeleteAlert, {"alert_id": str(alert_id)})
