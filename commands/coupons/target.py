"""Commands that act on one existing coupon name it by its code."""

from __future__ import annotations

from pydantic import Field

from commands.base import Command
from commands.unit_of_work import UnitOfWork
from domain.catalog import KEY_PATTERN
from domain.coupon import Coupon, coupon_id


class CouponCommand(Command):
    code: str = Field(pattern=KEY_PATTERN)

    def load(self, uow: UnitOfWork) -> Coupon:
        return uow.get(
            Coupon,
            coupon_id(self.app_id, self.code),
            field="code",
            app_id=self.app_id,
            named=self.code,
        )
