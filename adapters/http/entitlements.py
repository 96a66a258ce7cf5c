"""Entitlements: may a tenant use a feature now (one, several, all), and manual grants.

Answers come from the entitlements read model: `{allowed, feature, limit, used, remaining,
soft_limit, reason, source, valid_until}`. Grants (admin scope) turn a feature on by hand with
a reason and an optional expiry and limit; revoking one lets the plan's answer apply again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from adapters.http.auth import Admin, Reader
from adapters.http.common import (
    body_model,
    fields_of,
    run_command,
    run_hot_query,
    run_query,
    system_of,
)
from adapters.http.errors import ERROR_RESPONSES
from commands.base import ID_PATTERN
from commands.entitlements.grant_feature import GrantFeature
from commands.entitlements.revoke_feature import RevokeFeature
from domain.catalog import KEY_PATTERN

if TYPE_CHECKING:
    GrantBody = BaseModel
else:
    GrantBody = body_model(GrantFeature, "GrantFeatureBody", exclude=frozenset({"tenant_id"}))

router = APIRouter(tags=["entitlements"], responses=ERROR_RESPONSES)

TenantId = Annotated[str, Path(pattern=ID_PATTERN)]
FeatureKey = Annotated[str, Path(pattern=KEY_PATTERN)]
MAX_CHECK = 100


class CheckBody(BaseModel):
    """Several features of one tenant at once."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tenant_id: str = Field(pattern=ID_PATTERN)
    feature_keys: list[Annotated[str, Field(pattern=KEY_PATTERN)]] = Field(
        min_length=1, max_length=MAX_CHECK
    )


@router.get("/v1/tenants/{tenant_id}/entitlements", summary="Every feature of a tenant")
def all_entitlements(request: Request, principal: Reader, tenant_id: TenantId) -> dict[str, Any]:
    rows = run_query(request, "entitlements", app_id=principal.app_id, tenant_id=tenant_id)
    return {"tenant_id": tenant_id, "entitlements": rows}


@router.get(
    "/v1/tenants/{tenant_id}/entitlements/{feature_key}", summary="May the tenant use it now?"
)
async def entitlement(
    request: Request, principal: Reader, tenant_id: TenantId, feature_key: FeatureKey
) -> JSONResponse:
    answer = await run_hot_query(
        request,
        "entitlement",
        app_id=principal.app_id,
        tenant_id=tenant_id,
        feature_key=feature_key,
    )
    system_of(request).metrics.checks([bool(answer.get("allowed"))])  # on /metrics
    return JSONResponse(answer)


@router.post("/v1/entitlements/check", summary="Check several features at once")
async def check(request: Request, principal: Reader, body: CheckBody) -> JSONResponse:
    rows = await run_hot_query(
        request,
        "entitlements_bulk",
        app_id=principal.app_id,
        tenant_id=body.tenant_id,
        feature_keys=list(body.feature_keys),
    )
    system_of(request).metrics.checks(bool(row.get("allowed")) for row in rows)
    return JSONResponse({"tenant_id": body.tenant_id, "results": rows})


@router.post(
    "/v1/tenants/{tenant_id}/grants", status_code=201, summary="Grant a feature by hand (admin)"
)
def grant(request: Request, principal: Admin, tenant_id: TenantId, body: GrantBody) -> JSONResponse:
    fields = {**fields_of(body), "tenant_id": tenant_id}
    return run_command(request, principal, GrantFeature, fields, created=True)


@router.delete(
    "/v1/tenants/{tenant_id}/grants/{feature_key}", summary="Revoke a manual grant (admin)"
)
def revoke(
    request: Request,
    principal: Admin,
    tenant_id: TenantId,
    feature_key: FeatureKey,
    reason: Annotated[str, Query(min_length=1, max_length=500)] = "revoked through the API",
) -> JSONResponse:
    fields = {"tenant_id": tenant_id, "feature_key": feature_key, "reason": reason}
    return run_command(request, principal, RevokeFeature, fields)
