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

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from adapters.http.auth import Reader, Writer
from adapters.http.common import run_query, system_of
from adapters.http.consistency import mark_written
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


class UsageEvent(BaseModel):
    """One usage event: plain (`feature_key` and `quantity` units of it) or typed
    (`event_type` and its `properties`: api_request, storage, bandwidth, compute, or an app's
    own type, which the app's meters turn into quantities). One model, not a union: a batch of
    1,000 is validated without choosing a branch per event."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    idempotency_key: str = Field(
        min_length=1, max_length=200, description="a retried event is counted once"
    )
    tenant_id: str = Field(pattern=ID_PATTERN)
    feature_key: str | None = Field(default=None, pattern=KEY_PATTERN, description="plain")
    quantity: int | None = Field(
        default=None, ge=1, le=MAX_AMOUNT, strict=True, description="plain (default 1)"
    )
    event_type: str | None = Field(default=None, pattern=EVENT_TYPE_PATTERN, description="typed")
    properties: dict[str, Any] | None = Field(default=None, max_length=50, description="typed")
    timestamp: AwareDatetime | None = Field(
        default=None, description="when it happened (default now; up to 35 days late)"
    )

    @model_validator(mode="after")
    def _plain_or_typed(self) -> UsageEvent:
        if (self.feature_key is None) == (self.event_type is None):
            raise ValueError("give feature_key (a plain event) or event_type (a typed one)")
        if self.event_type is not None and self.quantity is not None:
            raise ValueError("a typed event has properties, not a quantity")
        if self.feature_key is not None and self.properties is not None:
            raise ValueError("a plain event has a quantity, not properties")
        return self


class UsageBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[UsageEvent] = Field(min_length=1, max_length=MAX_BATCH)


def _kind(value: Any) -> str:
    return "(batch)" if isinstance(value, dict) and "events" in value else "(event)"


UsageBody = Annotated[
    Annotated[UsageEvent, Tag("(event)")] | Annotated[UsageBatch, Tag("(batch)")],
    Discriminator(_kind),
]


_NO_PROPERTIES: Mapping[str, Any] = MappingProxyType({})


def _received(event: UsageEvent) -> UsageEventIn:
    return UsageEventIn(
        event.idempotency_key,
        event.tenant_id,
        event.feature_key,
        1 if event.quantity is None else event.quantity,
        event.event_type,
        event.timestamp,
        event.properties or _NO_PROPERTIES,
    )


@router.post("/v1/usage", summary="Record usage: one event or {events: [...]}")
def ingest(request: Request, principal: Writer, body: Annotated[UsageBody, Body()]) -> Any:
    single = not isinstance(body, UsageBatch)
    events = body.events if isinstance(body, UsageBatch) else [body]
    answer = system_of(request).usage.record(
        principal.app_id, [_received(e) for e in events], actor=principal.actor
    )
    system_of(request).metrics.usage(answer)  # the ingest rate on /metrics
    if single and answer["failed"]:
        error = answer["results"][0]["error"]
        raise NotFound(error["message"], field=error["field"])
    mark_written(request)  # Tally-Position: the head of the log after the commit
    return Response(orjson.dumps(answer), media_type="application/json")  # 1,000 results: fast


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
    meter: Annotated[str | None, Query(pattern=KEY_PATTERN)] = None,
    granularity: Literal["hour", "day", "month"] = "day",
    from_: Annotated[str | None, Query(alias="from", max_length=64)] = None,
    to: Annotated[str | None, Query(max_length=64)] = None,
    format: Literal["json", "csv"] | None = None,
    days: Annotated[int | None, Query(ge=1, le=MAX_HISTORY_DAYS)] = None,
    groups: bool = False,
) -> Response:
    """`days=N`: the last N days by day, zero-filled (the history); otherwise the buckets
    of `granularity` from `from` to `to`; `groups=true`: one row per group of a grouped
    meter, each with its `group`; `meter=KEY`: the features of the tenant that meter feeds."""
    params: dict[str, Any] = {"granularity": granularity, "to": to, "groups": groups}
    if from_ is not None:
        params["from"] = from_
    rows = [
        row
        for name in _features(request, principal.app_id, tenant_id, feature, meter)
        for row in _rows(request, principal.app_id, tenant_id, name, days, params)
    ]
    rows.sort(key=lambda row: (row["bucket_start"], row["feature"]))
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if wants_csv:
        from projections.usage.queries import usage_csv

        return Response(usage_csv(rows), media_type="text/csv; charset=utf-8")
    shown = "day" if days is not None else granularity
    return JSONResponse({"tenant_id": tenant_id, "granularity": shown, "usage": rows})


def _features(
    request: Request, app_id: str, tenant_id: str, feature: str | None, meter: str | None
) -> list[str | None]:
    """The features asked for: one (or all: None), or those a catalog meter feeds."""
    if meter is None:
        return [feature]
    fed = system_of(request).index.fed_by(app_id, tenant_id, meter)
    return [name for name in fed if feature is None or name == feature]


def _rows(
    request: Request,
    app_id: str,
    tenant_id: str,
    feature: str | None,
    days: int | None,
    params: dict[str, Any],
) -> list[dict[str, Any]]:
    if days is not None:
        history = run_query(
            request, "usage_history", app_id=app_id, tenant_id=tenant_id, feature=feature, days=days
        )
        return list(history)
    found = run_query(
        request, "usage", app_id=app_id, tenant_id=tenant_id, feature=feature, **params
    )
    return list(found)


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
