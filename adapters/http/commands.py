"""The generic command route: `POST /v1/commands/{command_name}`, the same body and reply as
the NATS command bus (`{"ok": true, "result": ...}` / `{"ok": false, "error": ...}`).

app_id comes from the API key: a body may omit it or repeat it; a different one is refused
(422 app_id_mismatch, nothing runs). The actor is the API key as well: a body `actor` is
refused (422 validation_error naming actor), an `on_behalf_of` needs the write scope (403
naming on_behalf_of), as on the typed routes (common.py). Catalog, grant, quota
configuration, coupon and API key commands need the admin scope, every other command the
write scope. An error answers the bus's reply with the status of its code (errors.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import JSONResponse

from adapters.http.auth import Principal, Reader
from adapters.http.common import (
    check_audit_fields,
    execute,
    int64_error,
    metrics_of,
    out_of_int64,
    system_of,
)
from adapters.http.errors import ERROR_RESPONSES, ApiError, status_for_code
from commands import edge
from commands.base import Command
from domain.api_key import Scope
from domain.errors import DomainError

router = APIRouter(tags=["commands"], responses=ERROR_RESPONSES)

ADMIN_COMMANDS = frozenset(
    {
        "define_plan",
        "revise_plan",
        "archive_plan",
        "grant_feature",
        "revoke_feature",
        "grant_allowance",
        "revoke_grant",
        "configure_quota",
        "reset_quota",
        "create_coupon",
        "deactivate_coupon",
        "create_api_key",
        "revoke_api_key",
        "set_tax_rate",
        "configure_billing",
        "invoice_subscription",
        "renew_subscription",
        "retry_invoice_payment",
    }
)


def scope_for(command_name: str) -> Scope:
    return Scope.ADMIN if command_name in ADMIN_COMMANDS else Scope.WRITE


def _reply(status: int, error: dict[str, Any]) -> JSONResponse:
    return JSONResponse(edge.refused(error), status_code=status)


@router.post(
    "/v1/commands/{command_name}",
    summary="Run any command by its bus name (same body and reply as NATS)",
)
def run(
    request: Request,
    principal: Reader,
    command_name: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,63}$")],
    payload: Annotated[dict[str, Any], Body(description="the command's fields")],
) -> JSONResponse:
    try:
        command = _command(request, principal, command_name, payload)
    except ApiError as refused:
        return _reply(refused.status, refused.error())
    except edge.Refused as bad:
        if bad.code == "validation_error":
            metrics_of(request).command(command_name, "validation_error")
        return _reply(status_for_code(bad.code), bad.error)
    try:
        outcome = execute(request, command)
    except DomainError as error:
        return _reply(status_for_code(error.code), error.as_dict())
    return JSONResponse(outcome.as_reply())


def _command(request: Request, principal: Principal, name: str, payload: dict[str, Any]) -> Command:
    """The command for the key's app and actor; ApiError or edge.Refused when refused."""
    command_type = system_of(request).bus.command_type
    try:
        command_type(name)
    except DomainError as unknown:
        raise edge.Refused(unknown.as_dict()) from None
    check_audit_fields(principal, payload)
    required = scope_for(name)
    if not principal.has(required):
        raise ApiError(
            403,
            "forbidden",
            f"{name} needs the {required.value} scope",
            [{"required_scope": required.value}],
        )
    given = payload.get("app_id")
    if given is not None and given != principal.app_id:
        raise _app_id_mismatch()
    too_big = out_of_int64(payload)
    if too_big is not None:
        raise int64_error(too_big)
    fields = {**payload, "app_id": principal.app_id, "actor": principal.actor}
    return edge.command_named(command_type, name, fields)


def _app_id_mismatch() -> ApiError:
    message = "this API key belongs to another app; omit it or send its own"
    detail = {"field": "app_id", "rule": "app_id_mismatch", "message": "not the key's app"}
    return ApiError(422, "app_id_mismatch", f"app_id: {message}", [detail])
