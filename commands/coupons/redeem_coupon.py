"""Redeem a coupon for a tenant (once per tenant, within its cap and validity window)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.base import TENANT_FIELD
from commands.billing.strategies import (
    AllowAllCoupons,
    CouponCheck,
    CouponValidator,
    require_coupon_allowed,
)
from commands.coupons.target import CouponCommand
from commands.coupons.view import coupon_view
from commands.unit_of_work import UnitOfWork
from domain.errors import NotFound
from domain.subscription import Subscription


class RedeemCoupon(CouponCommand):
    tenant_id: str = TENANT_FIELD
    subscription_id: UUID | None = None


def redeem_coupon(
    command: RedeemCoupon, uow: UnitOfWork, coupons: CouponValidator | None = None
) -> dict[str, Any]:
    """Redeem the coupon, once the app's CouponValidator allows it for this tenant."""
    coupon = command.load(uow)
    if command.subscription_id is not None:
        subscription = uow.get(
            Subscription, command.subscription_id, field="subscription_id", app_id=command.app_id
        )
        if subscription.state.tenant_id != command.tenant_id:
            raise NotFound(
                f"subscription {command.subscription_id} not found", field="subscription_id"
            )
    check = CouponCheck(command.app_id, command.tenant_id, command.code, command.subscription_id)
    require_coupon_allowed(coupons or AllowAllCoupons(), check)
    coupon.redeem(command.tenant_id, uow.cause, command.subscription_id)
    return coupon_view(coupon)
