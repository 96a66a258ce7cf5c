"""Meters of the caller's app: `POST /v1/meters` defines one (write scope; 201, or 200 for
the same definition again, `"duplicate": true`; another definition of a taken key is 409
`meter_redefined`), `GET /v1/meters` lists them in definition order (read scope).

The body keeps string filter values exactly as sent (no whitespace stripping): a filter
compares them with the events' properties, which are not stripped either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, create_model

from adapters.http.auth import Reader, Writer
from adapters.http.common import (
    NOT_IN_BODIES,
    build_command,
    command_reply,
    execute,
    fields_of,
    system_of,
)
from adapters.http.errors import ERROR_RESPONSES
from commands.meters.define_meter import DefineMeter
from domain.meter_catalog import MeterCatalog, meter_catalog_id, meter_view


def _body_model() -> type[BaseModel]:
    """The command's fields but app_id and actor (rules and descriptions included), unknown
    fields refused, strings as sent (body_model strips them)."""
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in DefineMeter.model_fields.items()
        if name not in NOT_IN_BODIES
    }
    return create_model(
        "DefineMeterBody",
        __config__=ConfigDict(extra="forbid"),
        __doc__=(DefineMeter.__doc__ or "").strip() or None,
        **fields,
    )


if TYPE_CHECKING:
    DefineMeterBody = BaseModel
else:
    DefineMeterBody = _body_model()

router = APIRouter(prefix="/v1/meters", tags=["meters"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, summary="Define a meter (the same definition again: 200)")
def define_meter(request: Request, principal: Writer, body: DefineMeterBody) -> JSONResponse:
    command = build_command(DefineMeter, principal, fields_of(body), request)
    outcome = execute(request, command)
    return command_reply(outcome, created=not outcome.result.get("duplicate", False))


@router.get("", summary="The app's meters, in definition order")
def list_meters(request: Request, principal: Reader) -> dict[str, Any]:
    catalog = system_of(request).aggregate(meter_catalog_id(principal.app_id))
    if not isinstance(catalog, MeterCatalog) or catalog.state.app_id != principal.app_id:
        return {"meters": []}
    return {"meters": [meter_view(meter) for meter in catalog.all()]}
