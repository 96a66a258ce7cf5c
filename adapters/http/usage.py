"""Usage: ingest (one event or a batch) and the usage read model (JSON or CSV).

Each usage event becomes a `consume_quota` command on the tenant's quota for the feature,
counted once per idempotency_key (a retried event answers as a duplicate). The whole request
is validated first: one bad event refuses the request (422, naming `events.<i>.<field>`) and
nothing is recorded. Events are then recorded one by one, each in its own transaction:
- a single event answers like any command: 200 with the counts, or the error's status (404
  when the tenant has no quota for the feature);
- a batch answers 200 with the counts and one result per event, in order; an event that
  failed (e.g. no such quota) carries its error and counts in `failed`. Retrying the whole
  batch is safe: the events already counted answer as duplicates.
A refusal by a hard limit is an answer, not an error: `allowed: false`, counted in `refused`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from adapters.http.auth import Principal, Reader, Writer
from adapters.http.common import build_command, execute, run_query
from adapters.http.errors import ERROR_RESPONSES
from commands.base import ID_PATTERN
from commands.quotas.consume_quota import ConsumeQuota
from domain.catalog import KEY_PATTERN
from domain.errors import DomainError
from domain.quota import MAX_AMOUNT

router = APIRouter(tags=["usage"], responses=ERROR_RESPONSES)

MAX_BATCH = 1000


class UsageEvent(BaseModel):
    """One usage event: `quantity` units of a metered feature used by a tenant."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    idempotency_key: str = Field(
        min_length=1, max_length=200, description="a retried event is counted once"
    )
    tenant_id: str = Field(pattern=ID_PATTERN)
    feature_key: str = Field(pattern=KEY_PATTERN)
    quantity: int = Field(default=1, ge=1, le=MAX_AMOUNT)


class UsageBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[UsageEvent] = Field(min_length=1, max_length=MAX_BATCH)


def _kind(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "events" in value else "event"


UsageBody = Annotated[
    Annotated[UsageEvent, Tag("event")] | Annotated[UsageBatch, Tag("batch")],
    Discriminator(_kind),
]


def _consume(request: Request, principal: Principal, event: UsageEvent) -> ConsumeQuota:
    fields = {
        "tenant_id": event.tenant_id,
        "feature_key": event.feature_key,
        "amount": event.quantity,
        "idempotency_key": event.idempotency_key,
    }
    command = build_command(ConsumeQuota, principal, fields, None)
    assert isinstance(command, ConsumeQuota)
    return command


def _result(index: int, event: UsageEvent, outcome: dict[str, Any]) -> dict[str, Any]:
    status = "duplicate" if outcome.get("duplicate") else "accepted"
    if not outcome.get("allowed", True) and status == "accepted":
        status = "refused"
    return {
        "index": index,
        "idempotency_key": event.idempotency_key,
        "status": status,
        **{
            key: outcome.get(key)
            for key in ("allowed", "used", "limit", "remaining", "overage", "reason")
        },
    }


@router.post("/v1/usage", summary="Record usage: one event or {events: [...]}")
def ingest(request: Request, principal: Writer, body: Annotated[UsageBody, Body()]) -> Any:
    single = isinstance(body, UsageEvent)
    events = [body] if isinstance(body, UsageEvent) else body.events
    commands = [_consume(request, principal, event) for event in events]
    counts = {"accepted": 0, "duplicates": 0, "refused": 0, "failed": 0}
    results: list[dict[str, Any]] = []
    for index, (event, command) in enumerate(zip(events, commands, strict=True)):
        try:
            outcome = execute(request, command).result
        except DomainError as error:
            if single:
                raise
            counts["failed"] += 1
            results.append(
                {
                    "index": index,
                    "idempotency_key": event.idempotency_key,
                    "status": "failed",
                    "error": error.as_dict(),
                }
            )
            continue
        result = _result(index, event, outcome)
        counts[
            {"accepted": "accepted", "duplicate": "duplicates", "refused": "refused"}[
                result["status"]
            ]
        ] += 1
        results.append(result)
    return {**counts, "results": results}


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
) -> Response:
    params: dict[str, Any] = {"feature": feature, "granularity": granularity, "to": to}
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
