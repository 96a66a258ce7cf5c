"""Create a coupon: percent or amount off, once / repeating / forever, capped, windowed,
optionally carrying an unused amount off forward to later invoices."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from commands.base import Command, Instant
from commands.coupons.view import coupon_view
from commands.unit_of_work import UnitOfWork
from domain.catalog import KEY_PATTERN
from domain.coupon import Coupon, CouponDuration, PercentOff, coupon_id
from domain.errors import AlreadyExists
from domain.money import Money


class CreateCoupon(Command):
    code: str = Field(pattern=KEY_PATTERN)
    percent_off: PercentOff | None = Field(
        default=None, description='an integer or a decimal string ("12.5"), 0 < p <= 100'
    )
    amount_off: Money | None = None
    duration: CouponDuration = CouponDuration.ONCE
    duration_in_periods: int | None = Field(default=None, ge=1, description="repeating only")
    max_redemptions: int | None = Field(default=None, ge=1)
    valid_from: Instant | None = None
    valid_until: Instant | None = None
    carry_forward: bool = Field(
        default=False, description="once amount_off coupons: the unused rest goes to later invoices"
    )


def create_coupon(command: CreateCoupon, uow: UnitOfWork) -> dict[str, Any]:
    if uow.find(Coupon, coupon_id(command.app_id, command.code)) is not None:
        raise AlreadyExists(f"coupon {command.code} already exists", field="code")
    coupon = uow.add(
        Coupon.create(
            command.app_id,
            command.code,
            uow.cause,
            percent_off=command.percent_off,
            amount_off=command.amount_off,
            duration=command.duration,
            duration_in_periods=command.duration_in_periods,
            max_redemptions=command.max_redemptions,
            valid_from=command.valid_from,
            valid_until=command.valid_until,
            carry_forward=command.carry_forward,
        )
    )
    return coupon_view(coupon)
