"""Revenue (MRR, ARR, recognized and deferred revenue) and subscription metrics, from the
revenue read model (rules: docs/revenue.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from adapters.http.auth import Reader
from adapters.http.common import run_query
from adapters.http.errors import ERROR_RESPONSES

router = APIRouter(tags=["revenue"], responses=ERROR_RESPONSES)


@router.get("/v1/revenue", summary="MRR, ARR, recognized and deferred revenue")
def revenue(
    request: Request,
    principal: Reader,
    granularity: Literal["day", "month"] = "month",
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=64)] = None,
    to: Annotated[str | None, Query(max_length=64)] = None,
    as_of: Annotated[
        str | None,
        Query(
            max_length=64,
            description="recognized up to this instant's UTC day and deferred at it "
            "(default now); MRR and ARR are always now",
        ),
    ] = None,
) -> Any:
    params: dict[str, Any] = {
        "granularity": granularity,
        "currency": currency,
        "to": to,
        "as_of": as_of,
    }
    if from_ is not None:
        params["from"] = from_
    return run_query(request, "revenue", app_id=principal.app_id, **params)


@router.get("/v1/metrics/subscriptions", summary="Subscriptions by plan and status, churn")
def subscription_metrics(request: Request, principal: Reader) -> Any:
    return run_query(request, "subscription_metrics", app_id=principal.app_id)
