"""Coupon aggregate: a percent or amount off, for once, some periods or forever, with a
redemption cap and a validity window read from the clock.

Its terms (`CouponTerms`) are copied onto a subscription when attached (domain/discount.py);
`discount_amount` is THE rule for what one coupon takes off one invoice.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

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


PERCENT_PLACES = 6
_PERCENT_RULE = 'percent_off is an integer or a decimal string such as "12.5"'
_DECIMAL_TEXT = re.compile(r"[0-9]{1,3}(\.[0-9]+)?")


def parse_percent_off(value: object) -> Decimal:
    """An exact percent from an integer or a decimal string: above 0, at most 100, at most
    6 decimal places. Floats are refused (they are not exact)."""
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value.strip()):
            raise InvalidValue(_PERCENT_RULE, field="percent_off")
        value = value.strip()
    elif isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise InvalidValue(_PERCENT_RULE, field="percent_off")
    percent = Decimal(value)
    if not percent.is_finite() or not 0 < percent <= 100:
        raise InvalidValue("percent_off is above 0 and at most 100", field="percent_off")
    exponent = percent.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > PERCENT_PLACES:
        raise InvalidValue(
            f"percent_off has at most {PERCENT_PLACES} decimal places", field="percent_off"
        )
    return percent


def percent_json(percent: Decimal) -> int | str:
    """A whole percent stays an integer (as coupons stored it before); "12.5" otherwise."""
    if percent == percent.to_integral_value():
        return int(percent)
    return format(percent.normalize(), "f")


PercentOff = Annotated[
    Decimal,
    BeforeValidator(parse_percent_off),
    PlainSerializer(percent_json, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 100},
                {"type": "string", "pattern": r"^\s*[0-9]{1,3}(\.[0-9]{1,6})?\s*$"},
            ],
            "description": "percent off: an integer or a decimal string, 0 < p <= 100",
        }
    ),
]
"""An exact percent (Decimal); integers and decimal strings in, an integer or a string out."""


class CouponTerms(BaseModel):
    """What a coupon takes off and for how long: copied onto a subscription when attached."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    percent_off: PercentOff | None = None
    amount_off: Money | None = None
    duration: CouponDuration
    duration_in_periods: int | None = None
    carry_forward: bool = False

    def describe(self) -> str:
        """How an invoice line names it: "spring (12.5% off)", "fixed (5.00 USD off)"."""
        if self.percent_off is not None:
            return f"{self.code} ({percent_json(self.percent_off)}% off)"
        assert self.amount_off is not None
        return f"{self.code} ({self.amount_off.format()} off)"

    def require_currency(self, currency: str) -> None:
        """An amount-off coupon applies only to a subscription billed in its currency."""
        if self.amount_off is not None and self.amount_off.currency != currency:
            raise CurrencyMismatch(
                f"coupon {self.code} takes {self.amount_off.currency} off (amount_off); "
                f"the subscription is billed in {currency}",
                field="code",
                rule="same_currency",
                coupon_currency=self.amount_off.currency,
                subscription_currency=currency,
            )


def discount_amount(terms: CouponTerms, base: Money, balance: Money | None = None) -> Money:
    """What one coupon takes off `base` (the subtotal left after earlier coupons), >= 0.

    Nothing off a base of zero or less. A percent is rounded once, half-up, to the minor
    unit; an amount off (or the `balance` still carried forward) is capped at the base.
    """
    if terms.amount_off is not None and terms.amount_off.currency != base.currency:
        raise CurrencyMismatch(
            f"coupon {terms.code} is in {terms.amount_off.currency}, the amount in {base.currency}",
            field="amount_off",
        )
    if base.amount <= 0:
        return Money.zero(base.currency)
    if terms.percent_off is not None:
        return min(base.scale(Fraction(terms.percent_off) / 100), base)
    assert terms.amount_off is not None
    available = balance if balance is not None else terms.amount_off
    return min(max(available, Money.zero(base.currency)), base)


class CouponState(AggregateState):
    code: str
    percent_off: PercentOff | None = None
    amount_off: Money | None = None
    duration: CouponDuration
    duration_in_periods: int | None = None
    max_redemptions: int | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    carry_forward: bool = False
    active: bool = True
    redemption_count: int = 0
    redeemed_by: dict[str, UUID | None] = Field(default_factory=dict)  # tenant -> subscription


class CouponEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "coupon"
    code: str


class CouponCreated(CouponEvent, CreatedEvent):
    """Events stored before percents became decimals hold an integer percent_off and no
    carry_forward: both load unchanged (an integer is an exact percent; False)."""

    NAME: ClassVar[str] = "CouponCreated"
    percent_off: PercentOff | None = None
    amount_off: Money | None = None
    duration: CouponDuration
    duration_in_periods: int | None = None
    max_redemptions: int | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    carry_forward: bool = False

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
            carry_forward=self.carry_forward,
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
        percent_off: Decimal | int | str | None = None,
        amount_off: Money | None = None,
        duration: CouponDuration = CouponDuration.ONCE,
        duration_in_periods: int | None = None,
        max_redemptions: int | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        carry_forward: bool = False,
    ) -> Coupon:
        validate_key(code, "code")
        percent = _checked_discount(percent_off, amount_off)
        duration = CouponDuration(duration)
        _check_duration(duration, duration_in_periods)
        _check_carry_forward(carry_forward, amount_off, duration)
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
            percent_off=percent,
            amount_off=amount_off,
            duration=duration,
            duration_in_periods=duration_in_periods,
            max_redemptions=max_redemptions,
            valid_from=valid_from,
            valid_until=valid_until,
            carry_forward=carry_forward,
        )

    @property
    def code(self) -> str:
        return self.state.code

    @property
    def redemption_count(self) -> int:
        return self.state.redemption_count

    def terms(self) -> CouponTerms:
        """What it takes off and for how long (what a subscription keeps when attached)."""
        state = self.state
        return CouponTerms(
            code=state.code,
            percent_off=state.percent_off,
            amount_off=state.amount_off,
            duration=state.duration,
            duration_in_periods=state.duration_in_periods,
            carry_forward=state.carry_forward,
        )

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
        """The (positive) discount on a subtotal by `discount_amount`, before any carry."""
        return discount_amount(self.terms(), amount)

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


def _checked_discount(percent_off: object, amount_off: Money | None) -> Decimal | None:
    """Exactly one of percent_off and amount_off; the percent parsed exactly."""
    if (percent_off is None) == (amount_off is None):
        raise InvalidValue("give exactly one of percent_off and amount_off", field="percent_off")
    if amount_off is not None and amount_off.amount <= 0:
        raise InvalidValue("amount_off must be above zero", field="amount_off")
    return parse_percent_off(percent_off) if percent_off is not None else None


def _check_duration(duration: CouponDuration, duration_in_periods: int | None) -> None:
    if duration is CouponDuration.REPEATING:
        if duration_in_periods is None or duration_in_periods < 1:
            raise InvalidValue(
                "a repeating coupon needs duration_in_periods >= 1", field="duration_in_periods"
            )
    elif duration_in_periods is not None:
        raise InvalidValue(
            "duration_in_periods is only for repeating coupons", field="duration_in_periods"
        )


def _check_carry_forward(
    carry_forward: bool, amount_off: Money | None, duration: CouponDuration
) -> None:
    """Only a once amount-off coupon carries its unused rest to later invoices (as Lago's
    fixed amount coupons applied once; a recurring one loses the rest each period)."""
    if not carry_forward:
        return
    if amount_off is None:
        raise InvalidValue("only an amount_off coupon carries forward", field="carry_forward")
    if duration is not CouponDuration.ONCE:
        raise InvalidValue("only a once coupon carries forward", field="carry_forward")
