"""Coupon aggregate: a percent or amount off, for once, some periods or forever, with a
redemption cap and a validity window read from the clock."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from typing import Any, ClassVar
from uuid import UUID

from pydantic import Field

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.catalog import validate_key
from domain.clock import ensure_aware
from domain.errors import (
    AlreadyExists,
    CouponNotRedeemable,
    CurrencyMismatch,
    InvalidTransition,
    InvalidValue,
)
from domain.money import Money


class CouponAlreadyRedeemed(AlreadyExists):
    """A tenant redeems a coupon at most once."""

    code = "coupon_already_redeemed"


class CouponDuration(StrEnum):
    ONCE = "once"
    REPEATING = "repeating"  # for duration_in_periods billing periods
    FOREVER = "forever"


def coupon_id(app_id: str, code: str) -> UUID:
    return stable_id("coupon", app_id, code)


class CouponState(AggregateState):
    code: str
    percent_off: int | None = None
    amount_off: Money | None = None
    duration: CouponDuration
    duration_in_periods: int | None = None
    max_redemptions: int | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    active: bool = True
    redemption_count: int = 0
    redeemed_by: dict[str, UUID | None] = Field(default_factory=dict)  # tenant -> subscription


class CouponEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "coupon"
    code: str


class CouponCreated(CouponEvent, CreatedEvent):
    NAME: ClassVar[str] = "CouponCreated"
    percent_off: int | None = None
    amount_off: Money | None = None
    duration: CouponDuration
    duration_in_periods: int | None = None
    max_redemptions: int | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def apply(self, aggregate: Any) -> None:
        aggregate.state = CouponState(
            app_id=self.app_id,
            code=self.code,
            percent_off=self.percent_off,
            amount_off=self.amount_off,
            duration=self.duration,
            duration_in_periods=self.duration_in_periods,
            max_redemptions=self.max_redemptions,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            redeemed_by={},
        )


class CouponRedeemed(CouponEvent):
    """tenant_id (the envelope field) is the redeeming tenant."""

    NAME: ClassVar[str] = "CouponRedeemed"
    subscription_id: UUID | None = None
    redemption_count: int

    def apply(self, aggregate: Any) -> None:
        aggregate.state.redemption_count = self.redemption_count
        aggregate.state.redeemed_by[self.tenant_id or ""] = self.subscription_id


class CouponDeactivated(CouponEvent):
    NAME: ClassVar[str] = "CouponDeactivated"

    def apply(self, aggregate: Any) -> None:
        aggregate.state.active = False


class Coupon(Aggregate[CouponState]):
    """A discount code of an app; its version serializes redemptions, so the cap holds
    under concurrent redeems (the loser of a race reloads and decides again)."""

    TYPE: ClassVar[str] = "coupon"
    State = CouponState

    @classmethod
    def create(
        cls,
        app_id: str,
        code: str,
        cause: Cause,
        *,
        percent_off: int | None = None,
        amount_off: Money | None = None,
        duration: CouponDuration = CouponDuration.ONCE,
        duration_in_periods: int | None = None,
        max_redemptions: int | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
    ) -> Coupon:
        validate_key(code, "code")
        if (percent_off is None) == (amount_off is None):
            raise InvalidValue(
                "give exactly one of percent_off and amount_off", field="percent_off"
            )
        if percent_off is not None and not 1 <= percent_off <= 100:
            raise InvalidValue("percent_off is between 1 and 100", field="percent_off")
        if amount_off is not None and amount_off.amount <= 0:
            raise InvalidValue("amount_off must be above zero", field="amount_off")
        duration = CouponDuration(duration)
        if duration is CouponDuration.REPEATING:
            if duration_in_periods is None or duration_in_periods < 1:
                raise InvalidValue(
                    "a repeating coupon needs duration_in_periods >= 1",
                    field="duration_in_periods",
                )
        elif duration_in_periods is not None:
            raise InvalidValue(
                "duration_in_periods is only for repeating coupons", field="duration_in_periods"
            )
        if max_redemptions is not None and max_redemptions < 1:
            raise InvalidValue("max_redemptions is at least 1", field="max_redemptions")
        valid_from = ensure_aware(valid_from) if valid_from is not None else None
        valid_until = ensure_aware(valid_until) if valid_until is not None else None
        if valid_from is not None and valid_until is not None and not valid_from < valid_until:
            raise InvalidValue("valid_from must be before valid_until", field="valid_until")
        return cls._create(
            CouponCreated,
            coupon_id(app_id, code),
            cause,
            app_id=app_id,
            code=code,
            percent_off=percent_off,
            amount_off=amount_off,
            duration=duration,
            duration_in_periods=duration_in_periods,
            max_redemptions=max_redemptions,
            valid_from=valid_from,
            valid_until=valid_until,
        )

    @property
    def code(self) -> str:
        return self.state.code

    @property
    def redemption_count(self) -> int:
        return self.state.redemption_count

    def redeem(self, tenant_id: str, cause: Cause, subscription_id: UUID | None = None) -> int:
        """Redeem for a tenant (once per tenant); returns the redemption count after it.

        Refused (CouponNotRedeemable) when deactivated, before valid_from or at/after
        valid_until by the clock, or when max_redemptions is reached.
        """
        self._require_redeemable(cause.occurred_at)
        if tenant_id in self.state.redeemed_by:
            raise CouponAlreadyRedeemed(
                f"tenant {tenant_id} already redeemed coupon {self.code}", field="tenant_id"
            )
        cap = self.state.max_redemptions
        if cap is not None and self.state.redemption_count >= cap:
            raise CouponNotRedeemable(
                f"coupon {self.code} reached its {cap} redemptions", field="code", reason="cap"
            )
        count = self.state.redemption_count + 1
        self._trigger(
            CouponRedeemed,
            cause,
            tenant_id=tenant_id,  # the redeeming tenant (a coupon itself has none)
            code=self.code,
            subscription_id=subscription_id,
            redemption_count=count,
        )
        return count

    def deactivate(self, cause: Cause) -> None:
        if not self.state.active:
            raise InvalidTransition(f"coupon {self.code} is already deactivated", field="code")
        self._trigger(CouponDeactivated, cause, code=self.code)

    def is_redeemable_at(self, instant: datetime) -> bool:
        try:
            self._require_redeemable(instant)
        except CouponNotRedeemable:
            return False
        cap = self.state.max_redemptions
        return cap is None or self.state.redemption_count < cap

    def discount_for(self, amount: Money) -> Money:
        """The (positive) discount on a subtotal: percent rounded half-up once, or the fixed
        amount capped at the subtotal; nothing off a subtotal of zero or less."""
        if self.state.amount_off is not None and self.state.amount_off.currency != amount.currency:
            raise CurrencyMismatch(
                f"coupon {self.code} is in {self.state.amount_off.currency}, "
                f"the amount in {amount.currency}",
                field="currency",
            )
        if amount.amount <= 0:
            return Money.zero(amount.currency)
        if self.state.percent_off is not None:
            return amount.scale(Fraction(self.state.percent_off, 100))
        assert self.state.amount_off is not None
        return min(self.state.amount_off, amount)

    def _require_redeemable(self, instant: datetime) -> None:
        state = self.state
        if not state.active:
            raise CouponNotRedeemable(
                f"coupon {self.code} is deactivated", field="code", reason="deactivated"
            )
        if state.valid_from is not None and instant < state.valid_from:
            raise CouponNotRedeemable(
                f"coupon {self.code} is valid from {state.valid_from.isoformat()}",
                field="code",
                reason="not_yet_valid",
            )
        if state.valid_until is not None and instant >= state.valid_until:
            raise CouponNotRedeemable(
                f"coupon {self.code} expired at {state.valid_until.isoformat()}",
                field="code",
                reason="expired",
            )
