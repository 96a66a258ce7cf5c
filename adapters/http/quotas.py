"""Per-tenant quotas: read one (read), configure one, give or take back extra allowance,
reset it (admin).

`PUT /v1/tenants/{tenant_id}/quotas/{feature_key}` is the `configure_quota` command (creates
the quota, or reconfigures it: limit, enforcement, period, meter); allowances are the
`grant_allowance` / `revoke_grant` commands (extra units until they expire, docs/usage.md);
`POST …/reset` is `reset_quota` (a new window now, or only once the current one ended).
`GET` answers the quota from the event store (always current), allowances included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from adapters.http.auth import Admin, Reader
from adapters.http.common import body_model, fields_of, run_command, system_of
from adapters.http.errors import ERROR_RESPONSES, ApiError
from adapters.http.replies import QuotaReply, QuotaResetReply, documented
from commands.base import ID_PATTERN
from commands.quotas.configure_quota import ConfigureQuota
from commands.quotas.grant_allowance import GrantAllowance
from commands.quotas.reset_quota import ResetQuota
from commands.quotas.revoke_grant import RevokeGrant
from commands.quotas.view import quota_view
from domain.catalog import KEY_PATTERN
from domain.quota import Quota, quota_id

_IDS = frozenset({"tenant_id", "feature_key"})

if TYPE_CHECKING:
    ConfigureBody = BaseModel
    AllowanceBody = BaseModel
    ResetBody = BaseModel
else:
    ConfigureBody = body_model(
        ConfigureQuota,
        "ConfigureQuotaBody",
        exclude=_IDS,
        example={"limit": 1000, "enforcement": "hard", "period": "month"},
    )
    AllowanceBody = body_model(
        GrantAllowance,
        "GrantAllowanceBody",
        exclude=_IDS,
        example={"amount": 500, "reason": "launch week", "grant_id": "launch-week"},
    )
    ResetBody = body_model(
        ResetQuota, "ResetQuotaBody", exclude=_IDS, example={"only_if_ended": False}
    )

router = APIRouter(
    prefix="/v1/tenants/{tenant_id}/quotas/{feature_key}",
    tags=["quotas"],
    responses=ERROR_RESPONSES,
)

TenantId = Annotated[str, Path(pattern=ID_PATTERN, description="the app's customer")]
FeatureKey = Annotated[str, Path(pattern=KEY_PATTERN, description="a metered feature")]
GrantId = Annotated[str, Path(pattern=ID_PATTERN, description="the allowance's grant_id")]


def _fields(tenant_id: str, feature_key: str, body: BaseModel | None = None) -> dict[str, object]:
    return {**fields_of(body), "tenant_id": tenant_id, "feature_key": feature_key}


@router.get("", summary="A tenant's quota of a feature", responses=documented(QuotaReply))
def get_quota(
    request: Request, principal: Reader, tenant_id: TenantId, feature_key: FeatureKey
) -> dict[str, Any]:
    system = system_of(request)
    quota = system.aggregate(quota_id(principal.app_id, tenant_id, feature_key))
    if not isinstance(quota, Quota) or quota.state.app_id != principal.app_id:
        message = f"tenant {tenant_id} has no quota for feature {feature_key}"
        raise ApiError(404, "not_found", message, [{"field": "feature_key"}])
    return quota_view(quota, system.clock.now())


@router.put("", summary="Configure a tenant's quota of a feature", responses=documented(QuotaReply))
def configure_quota(
    request: Request,
    principal: Admin,
    tenant_id: TenantId,
    feature_key: FeatureKey,
    body: ConfigureBody,
) -> JSONResponse:
    fields = _fields(tenant_id, feature_key, body)
    return run_command(request, principal, ConfigureQuota, fields)


@router.post(
    "/allowances",
    status_code=201,
    summary="Give the quota extra allowance (until it expires)",
    responses=documented(QuotaReply, 201),
)
def grant_allowance(
    request: Request,
    principal: Admin,
    tenant_id: TenantId,
    feature_key: FeatureKey,
    body: AllowanceBody,
) -> JSONResponse:
    fields = _fields(tenant_id, feature_key, body)
    return run_command(request, principal, GrantAllowance, fields, created=True)


@router.delete(
    "/allowances/{grant_id}",
    summary="Take back an allowance",
    responses=documented(QuotaReply),
)
def revoke_allowance(
    request: Request,
    principal: Admin,
    tenant_id: TenantId,
    feature_key: FeatureKey,
    grant_id: GrantId,
    reason: Annotated[str, Query(min_length=1, max_length=500)] = "revoked through the API",
) -> JSONResponse:
    fields = {**_fields(tenant_id, feature_key), "grant_id": grant_id, "reason": reason}
    return run_command(request, principal, RevokeGrant, fields)


@router.post(
    "/reset",
    summary="Start the quota's next window (now, or only once the current one ended)",
    responses=documented(QuotaResetReply),
)
def reset_quota(
    request: Request,
    principal: Admin,
    tenant_id: TenantId,
    feature_key: FeatureKey,
    body: ResetBody | None = None,
) -> JSONResponse:
    fields = _fields(tenant_id, feature_key, body)
    return run_command(request, principal, ResetQuota, fields)
