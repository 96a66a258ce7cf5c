"""Deactivate a coupon: no further redemptions (existing ones keep applying)."""

from __future__ import annotations

from typing import Any

from commands.coupons.target import CouponCommand
from commands.coupons.view import coupon_view
from commands.unit_of_work import UnitOfWork


class DeactivateCoupon(CouponCommand):
    pass


def deactivate_coupon(command: DeactivateCoupon, uow: UnitOfWork) -> dict[str, Any]:
    coupon = command.load(uow)
    coupon.deactivate(uow.cause)
    return coupon_view(coupon)
