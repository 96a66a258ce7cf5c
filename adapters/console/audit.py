"""Events: the app's audit log (GET /v1/events) with tenant and aggregate filters, paging by
position, and a live tail that htmx polls for what was committed since."""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from adapters.console.guard import ConsolePage, Op, Operator
from adapters.console.render import page
from adapters.http import events
from adapters.http.common import system_of
from commands.base import ID_PATTERN

router = APIRouter(prefix="/console/events", include_in_schema=False, route_class=ConsolePage)

WINDOW = 1000  # positions a page starts before the head when no `after` is given
PAGE = 200
TAIL_SECONDS = 2
Filter = Annotated[str, Query(max_length=128)]
Position = Annotated[int | None, Query(ge=0, le=2**62)]


def _filters(tenant_id: str, aggregate_id: str) -> tuple[str | None, UUID | None, str | None]:
    """The tenant and aggregate to filter by (blank: none), or what is wrong with them."""
    if tenant_id and not re.fullmatch(ID_PATTERN, tenant_id):
        return None, None, f"tenant_id: not a tenant id ({ID_PATTERN})"
    try:
        aggregate = UUID(aggregate_id) if aggregate_id else None
    except ValueError:
        return None, None, "aggregate_id: not a UUID"
    return tenant_id or None, aggregate, None


def _read(
    request: Request, op: Operator, tenant: str | None, aggregate: UUID | None, after: int
) -> dict[str, Any]:
    found: dict[str, Any] = events.events(request, op.principal, aggregate, tenant, after, PAGE)
    return found


@router.get("")
def event_log(
    request: Request,
    op: Op,
    tenant_id: Filter = "",
    aggregate_id: Filter = "",
    after: Position = None,
) -> Response:
    tenant, aggregate, error = _filters(tenant_id, aggregate_id)
    head = system_of(request).ledger.recorder.max_notification_id() or 0
    start = after if after is not None else (0 if aggregate else max(head - WINDOW, 0))
    log = {"events": [], "next_after": start, "head": head}
    if error is None:
        log = _read(request, op, tenant, aggregate, start)
    context: dict[str, Any] = {
        "title": "Events",
        "nav": "events",
        "op": op,
        "error": error,
        "tenant_id": tenant_id,
        "aggregate_id": aggregate_id,
        "after": start,
        "earlier": max(start - WINDOW, 0) if start > 0 and not aggregate else None,
        "log": log,
        "tail_after": head,
        "tail": error is None and aggregate is None,
        "tail_seconds": TAIL_SECONDS,
    }
    return page(request, "events.html", context, status_code=422 if error else 200)


@router.get("/tail")
def tail(
    request: Request,
    op: Op,
    after: Annotated[int, Query(ge=0, le=2**62)],
    tenant_id: Filter = "",
) -> Response:
    """The events committed after `after`, then a new poller that asks from there on."""
    tenant, _, error = _filters(tenant_id, "")
    log = {"events": [], "next_after": after}
    if error is None:
        log = _read(request, op, tenant, None, after)
    context: dict[str, Any] = {
        "op": op,
        "events": log["events"],
        "tail_after": log["next_after"],
        "tenant_id": tenant_id,
        "tail_seconds": TAIL_SECONDS,
    }
    return page(request, "_event_tail.html", context)
