"""Coupons: create and deactivate (admin), list and read (read), redeem one for a tenant and
attach one to a subscription (write).

`POST /v1/subscriptions/{id}/coupons` redeems the coupon for the subscription's tenant and
attaches it (docs/coupons.md); `POST /v1/subscriptions` takes the same code as `coupon`.
Lists come from the app's CouponCreated events (see index.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from adapters.http.auth import Admin, Reader, Writer
from adapters.http.common import body_model, fields_of, owned, run_command, system_of
from adapters.http.errors import ERROR_RESPONSES
from adapters.http.replies import CouponReply, documented
from commands.coupons.attach_coupon import AttachCoupon
from commands.coupons.create_coupon import CreateCoupon
from commands.coupons.deactivate_coupon import DeactivateCoupon
from commands.coupons.redeem_coupon import RedeemCoupon
from commands.coupons.view import coupon_view
from domain.catalog import KEY_PATTERN
from domain.coupon import Coupon, coupon_id

_ID = frozenset({"subscription_id"})

if TYPE_CHECKING:
    CreateBody = BaseModel
    AttachBody = BaseModel
    RedeemBody = BaseModel
    DeactivateBody = BaseModel
else:
    CreateBody = body_model(CreateCoupon, "CreateCouponBody")
    AttachBody = body_model(AttachCoupon, "AttachCouponBody", exclude=_ID)
    RedeemBody = body_model(
        RedeemCoupon,
        "RedeemCouponBody",
        exclude=frozenset({"code"}),
        example={"tenant_id": "tenant-1"},
    )
    DeactivateBody = body_model(
        DeactivateCoupon, "DeactivateCouponBody", exclude=frozenset({"code"})
    )

router = APIRouter(tags=["coupons"], responses=ERROR_RESPONSES)

Code = Annotated[str, Path(pattern=KEY_PATTERN, description="the coupon's code")]


@router.post("/v1/coupons", status_code=201, summary="Create a coupon")
def create_coupon(request: Request, principal: Admin, body: CreateBody) -> JSONResponse:
    return run_command(request, principal, CreateCoupon, fields_of(body), created=True)


@router.get("/v1/coupons", summary="The app's coupons, oldest first")
def list_coupons(
    request: Request,
    principal: Reader,
    active: Annotated[bool | None, Query(description="only active (or deactivated) ones")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    system = system_of(request)
    coupons: list[dict[str, Any]] = []
    for found_id in request.app.state.index.ids(principal.app_id, "coupon"):
        coupon = system.aggregate(found_id)
        if not isinstance(coupon, Coupon) or coupon.state.app_id != principal.app_id:
            continue
        if active is not None and coupon.state.active != active:
            continue
        coupons.append(coupon_view(coupon))
        if len(coupons) >= limit:
            break
    return {"coupons": coupons}


@router.get("/v1/coupons/{code}", summary="One coupon")
def get_coupon(request: Request, principal: Reader, code: Code) -> dict[str, Any]:
    coupon = owned(
        system_of(request),
        Coupon,
        coupon_id(principal.app_id, code),
        principal.app_id,
        "code",
        code,
    )
    return coupon_view(coupon)


@router.post(
    "/v1/coupons/{code}/redemptions",
    status_code=201,
    summary="Redeem a coupon for a tenant (counts toward max_redemptions)",
    responses=documented(CouponReply, 201),
)
def redeem_coupon(
    request: Request, principal: Writer, code: Code, body: RedeemBody
) -> JSONResponse:
    fields = {**fields_of(body), "code": code}
    return run_command(request, principal, RedeemCoupon, fields, created=True)


@router.post(
    "/v1/coupons/{code}/deactivate",
    summary="Deactivate a coupon: no new redemptions (attached ones keep applying)",
    responses=documented(CouponReply),
)
def deactivate_coupon(
    request: Request, principal: Admin, code: Code, body: DeactivateBody | None = None
) -> JSONResponse:
    fields = {**fields_of(body), "code": code}
    return run_command(request, principal, DeactivateCoupon, fields)


@router.post(
    "/v1/subscriptions/{subscription_id}/coupons",
    status_code=201,
    tags=["subscriptions"],
    summary="Redeem a coupon and attach it to the subscription",
)
def attach_coupon(
    request: Request, principal: Writer, subscription_id: UUID, body: AttachBody
) -> JSONResponse:
    fields = {**fields_of(body), "subscription_id": str(subscription_id)}
    return run_command(request, principal, AttachCoupon, fields, created=True)
