"""Billing profiles: `PUT /v1/tenants/{tenant_id}/profile` sets a tenant's profile (write
scope; created the first time, replaced after), `GET` reads it (404 before the first PUT)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from adapters.http.auth import Reader, Writer
from adapters.http.common import body_model, fields_of, run_command, system_of
from adapters.http.errors import ERROR_RESPONSES, ApiError
from commands.base import ID_PATTERN
from commands.profiles.set_billing_profile import SetBillingProfile
from commands.profiles.view import profile_view
from domain.profile import BillingProfile, billing_profile_id

if TYPE_CHECKING:
    ProfileBody = BaseModel
else:
    ProfileBody = body_model(
        SetBillingProfile, "BillingProfileBody", exclude=frozenset({"tenant_id"})
    )

router = APIRouter(prefix="/v1/tenants", tags=["billing profiles"], responses=ERROR_RESPONSES)

TenantId = Annotated[str, Path(pattern=ID_PATTERN, description="the app's customer")]


@router.put("/{tenant_id}/profile", summary="Set a tenant's billing profile")
def set_profile(
    request: Request, principal: Writer, tenant_id: TenantId, body: ProfileBody
) -> JSONResponse:
    fields = {**fields_of(body), "tenant_id": tenant_id}
    return run_command(request, principal, SetBillingProfile, fields)


@router.get("/{tenant_id}/profile", summary="A tenant's billing profile")
def get_profile(request: Request, principal: Reader, tenant_id: TenantId) -> dict[str, Any]:
    profile = system_of(request).aggregate(billing_profile_id(principal.app_id, tenant_id))
    if not isinstance(profile, BillingProfile) or profile.state.app_id != principal.app_id:
        raise ApiError(
            404,
            "not_found",
            f"tenant {tenant_id} has no billing profile",
            [{"field": "tenant_id"}],
        )
    return profile_view(profile)
