"""Tax rates of the caller's app: `PUT /v1/tax-rates/{country}` sets one country's rate
(admin scope), `GET /v1/tax-rates` lists them by country (read scope)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from adapters.http.auth import Admin, Reader
from adapters.http.common import body_model, fields_of, run_command, system_of
from adapters.http.errors import ERROR_RESPONSES
from commands.tax.set_tax_rate import SetTaxRate
from commands.tax.view import tax_rate_view
from domain.tax import TaxRate

if TYPE_CHECKING:
    TaxRateBody = BaseModel
else:
    TaxRateBody = body_model(SetTaxRate, "TaxRateBody", exclude=frozenset({"country"}))

router = APIRouter(prefix="/v1/tax-rates", tags=["tax"], responses=ERROR_RESPONSES)

# The rule (ISO 3166-1 alpha-2) is checked by the command, so a bad code answers 422 naming
# `country` like every other field; the path only bounds its length.
CountryCode = Annotated[str, Path(min_length=1, max_length=8, description="e.g. DE")]


@router.put("/{country}", summary="Set the tax rate for customers of one country")
def set_tax_rate(
    request: Request, principal: Admin, country: CountryCode, body: TaxRateBody
) -> JSONResponse:
    fields = {**fields_of(body), "country": country}
    return run_command(request, principal, SetTaxRate, fields)


@router.get("", summary="The app's tax rates, by country")
def list_tax_rates(request: Request, principal: Reader) -> dict[str, Any]:
    system = system_of(request)
    rates = []
    for aggregate_id in request.app.state.index.ids(principal.app_id, "tax_rate"):
        rate = system.aggregate(aggregate_id)
        if isinstance(rate, TaxRate) and rate.state.app_id == principal.app_id:
            rates.append(tax_rate_view(rate))
    return {"tax_rates": sorted(rates, key=lambda rate: str(rate["country"]))}
