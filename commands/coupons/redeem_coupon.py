"""Redeem a coupon for a tenant (once per tenant, within its cap and validity window)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from commands.base import TENANT_FIELD
from commands.coupons.target import CouponCommand
from commands.coupons.view import coupon_view
from commands.unit_of_work import UnitOfWork
from domain.errors import NotFound
from domain.subscription import Subscription


class RedeemCoupon(CouponCommand):
    tenant_id: str = TENANT_FIELD
    subscription_id: UUID | None = None


def redeem_coupon(command: RedeemCoupon, uow: UnitOfWork) -> dict[str, Any]:
    coupon = command.load(uow)
    if command.subscription_id is not None:
        subscription = uow.get(
            Subscription, command.subscription_id, field="subscription_id", app_id=command.app_id
        )
        if subscription.state.tenant_id != command.tenant_id:
            raise NotFound(
                f"subscription {command.subscription_id} not found", field="subscription_id"
            )
    coupon.redeem(command.tenant_id, uow.cause, command.subscription_id)
    return coupon_view(coupon)
