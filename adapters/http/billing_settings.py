"""The caller's app billing settings: `PUT /v1/billing-settings` sets them (admin scope; the
whole settings, a field left out takes its default), `GET /v1/billing-settings` reads them
(read scope; the defaults until the first PUT). See docs/dunning.md and docs/pricing.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from adapters.http.auth import Admin, Reader
from adapters.http.common import body_model, fields_of, run_command, system_of
from adapters.http.errors import ERROR_RESPONSES
from commands.billing.configure_billing import ConfigureBilling, settings_view
from domain.billing_settings import BillingSettings, BillingSettingsTerms, billing_settings_id

if TYPE_CHECKING:
    BillingSettingsBody = BaseModel
else:
    BillingSettingsBody = body_model(ConfigureBilling, "BillingSettingsBody")

router = APIRouter(prefix="/v1/billing-settings", tags=["billing"], responses=ERROR_RESPONSES)


@router.put("", summary="Set the app's billing settings (grace period, proration, dunning)")
def set_billing_settings(
    request: Request, principal: Admin, body: BillingSettingsBody
) -> JSONResponse:
    return run_command(request, principal, ConfigureBilling, fields_of(body))


@router.get("", summary="The app's billing settings (the defaults until set)")
def get_billing_settings(request: Request, principal: Reader) -> dict[str, Any]:
    found = system_of(request).aggregate(billing_settings_id(principal.app_id))
    if isinstance(found, BillingSettings) and found.state.app_id == principal.app_id:
        return settings_view(found.state.terms)
    return settings_view(BillingSettingsTerms())
