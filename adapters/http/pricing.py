"""Pricing: `POST /v1/pricing/rate` prices a quantity under a pricing model with the domain's
`rate()` (docs/pricing.md). Stateless: it reads and records nothing, so the read scope is
enough. A bad model or quantity answers 422 naming the field."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from adapters.http.auth import Reader
from adapters.http.errors import ERROR_RESPONSES
from domain.catalog import PricingModel
from domain.pricing import MAX_QUANTITY, parse_quantity, rate

QUANTITY_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_QUANTITY},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*$", "examples": ["12.5"]},
    ],
    "description": "units to price: a JSON integer or a decimal string, never a float",
}
Quantity = Annotated[
    int | Decimal, BeforeValidator(parse_quantity), WithJsonSchema(QUANTITY_SCHEMA)
]


class RateBody(BaseModel):
    """A pricing model as the catalog accepts it and the quantity to price."""

    model_config = ConfigDict(extra="forbid")

    model: PricingModel = Field(description="flat, per_unit, graduated, volume or package")
    quantity: Quantity


router = APIRouter(prefix="/v1/pricing", tags=["pricing"], responses=ERROR_RESPONSES)


@router.post("/rate", summary="Price a quantity under a pricing model (records nothing)")
def rate_quantity(principal: Reader, body: RateBody) -> dict[str, Any]:
    return rate(body.model, body.quantity).model_dump(mode="json")
