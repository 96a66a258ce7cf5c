"""Usage: ingest (one event or a batch) and the usage read model (JSON or CSV).

Ingest is the usage service (commands/usage/record_usage.py): a request of up to 1,000
events is validated whole first (one bad event refuses the request with 422 naming
`events.<i>.<field>`, and nothing is recorded), then decided per quota and saved in ONE
transaction with the idempotency keys (the database counts a key once, for at least 35
days, across period boundaries):
- a single event answers 200 with the counts, or the error's status (404 when the tenant
  has no quota for the feature);
- a batch answers 200 with the counts and one result per event, in order; an event that
  failed (e.g. no such quota) carries its error and counts in `failed`. Retrying the whole
  batch is safe: the events already counted answer as duplicates.
A refusal by a hard limit is an answer, not an error: `allowed: false`, counted in `refused`.
Integers are JSON integers only: `"5"`, `5.0` and `true` are refused as quantities.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Discriminator, Field, Tag

from adapters.http.auth import Reader, Writer
from adapters.http.common import run_query, system_of
from adapters.http.errors import ERROR_RESPONSES
from commands.base import ID_PATTERN
from commands.usage.record_usage import UsageEventIn
from domain.catalog import KEY_PATTERN
from domain.errors import NotFound
from domain.quota import MAX_AMOUNT
from projections.usage.queries import MAX_HISTORY_DAYS

router = APIRouter(tags=["usage"], responses=ERROR_RESPONSES)

MAX_BATCH = 1000
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class PlainUsageEvent(BaseModel):
    """`quantity` units of a metered feature used by a tenant."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    idempotency_key: str = Field(
        min_length=1, max_length=200, description="a retried event is counted once"
    )
    tenant_id: str = Field(pattern=ID_PATTERN)
    feature_key: str = Field(pattern=KEY_PATTERN)
    quantity: int = Field(default=1, ge=1, le=MAX_AMOUNT, strict=True)
    timestamp: AwareDatetime | None = Field(
        default=None, description="when it happened (default now; up to 35 days late)"
    )


class TypedUsageEvent(BaseModel):
    """A typed event (api_request, storage, bandwidth, compute, or an app's own type) that
    the app's meters turn into quantities."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    idempotency_key: str = Field(
        min_length=1, max_length=200, description="a retried event is counted once"
    )
    tenant_id: str = Field(pattern=ID_PATTERN)
    event_type: str = Field(pattern=EVENT_TYPE_PATTERN)
    timestamp: AwareDatetime | None = Field(
        default=None, description="when it happened (default now; up to 35 days late)"
    )
    properties: dict[str, Any] = Field(default_factory=dict, max_length=50)


def _event_kind(value: Any) -> str:
    return "(typed)" if isinstance(value, dict) and "event_type" in value else "(plain)"


UsageEvent = Annotated[
    Annotated[PlainUsageEvent, Tag("(plain)")] | Annotated[TypedUsageEvent, Tag("(typed)")],
    Discriminator(_event_kind),
]


class UsageBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[UsageEvent] = Field(min_length=1, max_length=MAX_BATCH)


def _kind(value: Any) -> str:
    return "(batch)" if isinstance(value, dict) and "events" in value else "(event)"


UsageBody = Annotated[
    Annotated[UsageEvent, Tag("(event)")] | Annotated[UsageBatch, Tag("(batch)")],
    Discriminator(_kind),
]


def _received(event: PlainUsageEvent | TypedUsageEvent) -> UsageEventIn:
    timestamp: datetime | None = event.timestamp
    if isinstance(event, PlainUsageEvent):
        return UsageEventIn(
            idempotency_key=event.idempotency_key,
            tenant_id=event.tenant_id,
            feature_key=event.feature_key,
            quantity=event.quantity,
            timestamp=timestamp,
        )
    return UsageEventIn(
        idempotency_key=event.idempotency_key,
        tenant_id=event.tenant_id,
        event_type=event.event_type,
        timestamp=timestamp,
        properties=event.properties,
    )


@router.post("/v1/usage", summary="Record usage: one event or {events: [...]}")
def ingest(request: Request, principal: Writer, body: Annotated[UsageBody, Body()]) -> Any:
    single = not isinstance(body, UsageBatch)
    events = body.events if isinstance(body, UsageBatch) else [body]
    answer = system_of(request).usage.record(
        principal.app_id, [_received(e) for e in events], actor=principal.actor
    )
    if single and answer["failed"]:
        error = answer["results"][0]["error"]
        raise NotFound(error["message"], field=error["field"])
    return answer


TenantId = Annotated[str, Path(pattern=ID_PATTERN)]


@router.get(
    "/v1/tenants/{tenant_id}/usage",
    summary="Usage buckets (JSON, or CSV with Accept: text/csv or format=csv)",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def usage(
    request: Request,
    principal: Reader,
    tenant_id: TenantId,
    feature: Annotated[str | None, Query(pattern=KEY_PATTERN)] = None,
    granularity: Literal["hour", "day", "month"] = "day",
    from_: Annotated[str | None, Query(alias="from", max_length=64)] = None,
    to: Annotated[str | None, Query(max_length=64)] = None,
    format: Literal["json", "csv"] | None = None,
    days: Annotated[int | None, Query(ge=1, le=MAX_HISTORY_DAYS)] = None,
    groups: bool = False,
) -> Response:
    """`days=N`: the last N days by day, zero-filled (the history); otherwise the buckets
    of `granularity` from `from` to `to`; `groups=true`: one row per group of a grouped
    meter, each with its `group`."""
    if days is not None:
        granularity = "day"
        rows = run_query(
            request,
            "usage_history",
            app_id=principal.app_id,
            tenant_id=tenant_id,
            feature=feature,
            days=days,
        )
    else:
        params: dict[str, Any] = {
            "feature": feature,
            "granularity": granularity,
            "to": to,
            "groups": groups,
        }
        if from_ is not None:
            params["from"] = from_
        rows = run_query(request, "usage", app_id=principal.app_id, tenant_id=tenant_id, **params)
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if wants_csv:
        from projections.usage.queries import usage_csv

        return Response(usage_csv(rows), media_type="text/csv; charset=utf-8")
    return JSONResponse({"tenant_id": tenant_id, "granularity": granularity, "usage": rows})


@router.get(
    "/v1/tenants/{tenant_id}/usage/current",
    summary="Each metered feature's usage in its current period (quota window)",
)
def current_usage(
    request: Request,
    principal: Reader,
    tenant_id: TenantId,
    feature: Annotated[str | None, Query(pattern=KEY_PATTERN)] = None,
) -> Any:
    rows = run_query(
        request,
        "usage_current_period",
        app_id=principal.app_id,
        tenant_id=tenant_id,
        feature=feature,
    )
    return {"tenant_id": tenant_id, "usage": rows}
