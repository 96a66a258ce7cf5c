"""SubscriptionDiscounts aggregate: the coupons attached to one subscription, and what each
has taken off which invoice.

Rules (docs/coupons.md):

- Each attached coupon keeps a copy of its terms from the moment it was attached (a later
  deactivation of the coupon does not take it back).
- Order on one invoice: percent coupons first, then amount-off coupons, each group in attach
  order; every coupon takes its share of what the coupons before it left (so two percents
  compound), and the discounted subtotal never goes below zero.
- A coupon "applies" to an invoice only when it takes something off it. An invoice whose
  subtotal is zero or less (a proration credit) takes no discount and consumes nothing; a
  coupon that finds nothing left (earlier coupons took it all) consumes nothing either.
- `once` ends after the first invoice it applies to; `repeating` after duration_in_periods
  periods (invoices of billing points; an immediate proration invoice is discounted but uses
  up no period); `forever` never. A once amount-off coupon with carry_forward keeps what the
  invoice could not absorb for the next invoices until it is used up.
- `apply` is idempotent per invoice id: applying to the same invoice again answers the lines
  recorded the first time and records nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.coupon import CouponDuration, CouponTerms, discount_amount
from domain.errors import AlreadyExists, CurrencyMismatch
from domain.money import Money

__all__ = [
    "AttachedCoupon",
    "CouponAlreadyAttached",
    "CouponAttached",
    "DiscountApplied",
    "DiscountLine",
    "SubscriptionDiscounts",
    "SubscriptionDiscountsOpened",
    "discount_amount",
    "subscription_discounts_id",
]


class CouponAlreadyAttached(AlreadyExists):
    """A coupon is attached to a subscription at most once."""

    code = "coupon_already_attached"


def subscription_discounts_id(app_id: str, subscription_id: UUID) -> UUID:
    return stable_id("subscription_discounts", app_id, str(subscription_id))


class DiscountLine(BaseModel):
    """One coupon's reduction of one invoice: `amount` is positive (what it takes off)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    description: str
    amount: Money
    source_event_ids: list[str]  # the CouponAttached and CouponRedeemed event ids


class AttachedCoupon(BaseModel):
    """A coupon on this subscription: its terms as attached and how much of it is used."""

    model_config = ConfigDict(extra="forbid")

    terms: CouponTerms
    attached_at: datetime
    attached_event_id: UUID
    redemption_event_id: UUID | None = None
    invoices_applied: int = 0
    discounted: Money  # the sum it has taken off so far
    carried_forward: Money | None = None  # carry_forward only: what is left for later invoices

    @property
    def code(self) -> str:
        return self.terms.code

    def balance(self) -> Money | None:
        """What an amount-off coupon can still take off the next invoice (None: a percent)."""
        if self.terms.amount_off is None:
            return None
        if self.terms.carry_forward and self.carried_forward is not None:
            return self.carried_forward
        return self.terms.amount_off

    def is_spent(self) -> bool:
        duration, applied = self.terms.duration, self.invoices_applied
        if duration is CouponDuration.FOREVER:
            return False
        if duration is CouponDuration.REPEATING:
            return applied >= (self.terms.duration_in_periods or 0)
        if self.terms.carry_forward:
            return self.carried_forward is not None and self.carried_forward.is_zero()
        return applied >= 1

    def periods_remaining(self) -> int | None:
        """Invoices a repeating coupon still applies to (None for once and forever)."""
        if self.terms.duration is not CouponDuration.REPEATING:
            return None
        return max(0, (self.terms.duration_in_periods or 0) - self.invoices_applied)

    def line(self, amount: Money) -> DiscountLine:
        sources = [str(self.attached_event_id)]
        if self.redemption_event_id is not None:
            sources.append(str(self.redemption_event_id))
        return DiscountLine(
            code=self.code,
            description=self.terms.describe(),
            amount=amount,
            source_event_ids=sources,
        )


class SubscriptionDiscountsState(AggregateState):
    tenant_id: str
    subscription_id: UUID
    currency: str
    coupons: list[AttachedCoupon] = Field(default_factory=list)  # in attach order
    invoices: dict[UUID, dict[str, Money]] = Field(default_factory=dict)  # invoice -> code -> off


class SubscriptionDiscountsEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "subscription_discounts"
    subscription_id: UUID


class SubscriptionDiscountsOpened(SubscriptionDiscountsEvent, CreatedEvent):
    NAME: ClassVar[str] = "SubscriptionDiscountsOpened"
    currency: str

    def apply(self, aggregate: Any) -> None:
        aggregate.state = SubscriptionDiscountsState(
            app_id=self.app_id,
            tenant_id=self.tenant_id or "",
            subscription_id=self.subscription_id,
            currency=self.currency,
        )


class CouponAttached(SubscriptionDiscountsEvent):
    """A redeemed coupon now discounts this subscription's invoices (terms copied)."""

    NAME: ClassVar[str] = "CouponAttached"
    code: str
    terms: CouponTerms
    redemption_event_id: UUID | None = None

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.coupons.append(
            AttachedCoupon(
                terms=self.terms,
                attached_at=self.timestamp,
                attached_event_id=self.event_id,
                redemption_event_id=self.redemption_event_id,
                discounted=Money.zero(state.currency),
            )
        )


class DiscountApplied(SubscriptionDiscountsEvent):
    """One coupon took `amount` off one invoice; counts and the carried rest after it."""

    NAME: ClassVar[str] = "DiscountApplied"
    invoice_id: UUID
    code: str
    amount: Money
    invoices_applied: int
    carried_forward: Money | None = None

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        entry = next(c for c in state.coupons if c.code == self.code)
        entry.invoices_applied = self.invoices_applied
        entry.discounted = entry.discounted + self.amount
        entry.carried_forward = self.carried_forward
        state.invoices.setdefault(self.invoice_id, {})[self.code] = self.amount


class SubscriptionDiscounts(Aggregate[SubscriptionDiscountsState]):
    """The coupons attached to one subscription; decides each invoice's discount lines."""

    TYPE: ClassVar[str] = "subscription_discounts"
    State = SubscriptionDiscountsState

    @classmethod
    def open(
        cls, app_id: str, tenant_id: str, subscription_id: UUID, currency: str, cause: Cause
    ) -> SubscriptionDiscounts:
        """Start the (empty) list for a subscription billed in `currency`."""
        return cls._create(
            SubscriptionDiscountsOpened,
            subscription_discounts_id(app_id, subscription_id),
            cause,
            app_id=app_id,
            tenant_id=tenant_id,
            subscription_id=subscription_id,
            currency=currency,
        )

    @property
    def coupons(self) -> list[AttachedCoupon]:
        return list(self.state.coupons)

    def require_attachable(self, terms: CouponTerms) -> None:
        """Refuse a second attach of one code, or an amount off in another currency."""
        if any(c.code == terms.code for c in self.state.coupons):
            raise CouponAlreadyAttached(
                f"coupon {terms.code} is already attached to subscription "
                f"{self.state.subscription_id}",
                field="code",
            )
        terms.require_currency(self.state.currency)

    def attach(
        self, coupon_terms: CouponTerms, cause: Cause, *, redemption_event_id: UUID | None = None
    ) -> CouponAttached:
        self.require_attachable(coupon_terms)
        return self._trigger(
            CouponAttached,
            cause,
            subscription_id=self.state.subscription_id,
            code=coupon_terms.code,
            terms=coupon_terms,
            redemption_event_id=redemption_event_id,
        )

    def preview(self, subtotal: Money) -> list[DiscountLine]:
        """The next invoice's discount lines for this subtotal; records nothing."""
        return [entry.line(amount) for entry, amount in self._plan(subtotal)]

    def apply(
        self, invoice_id: UUID, subtotal: Money, cause: Cause, *, counts_period: bool = True
    ) -> list[DiscountLine]:
        """Take the discounts off this invoice (one DiscountApplied per coupon that takes
        something); the same invoice again answers its recorded lines. An invoice that does
        not open a period (an immediate proration invoice: `counts_period` False) uses up
        no period of a repeating coupon, as Stripe counts months, not invoices."""
        if invoice_id in self.state.invoices:
            return self.recorded_lines(invoice_id)
        planned = self._plan(subtotal)
        for entry, amount in planned:
            self._record(invoice_id, entry, amount, cause, counts_period)
        return [entry.line(amount) for entry, amount in planned]

    def recorded_lines(self, invoice_id: UUID) -> list[DiscountLine]:
        """The lines `apply` recorded for an invoice (empty if none)."""
        recorded = self.state.invoices.get(invoice_id, {})
        by_code = {c.code: c for c in self.state.coupons}
        return [by_code[code].line(amount) for code, amount in recorded.items()]

    def _plan(self, subtotal: Money) -> list[tuple[AttachedCoupon, Money]]:
        """What each live coupon takes off, in order; the one rule preview and apply share."""
        if subtotal.currency != self.state.currency:
            raise CurrencyMismatch(
                f"the subscription's discounts are in {self.state.currency}, "
                f"the subtotal in {subtotal.currency}",
                field="currency",
            )
        left, planned = subtotal, []
        for entry in self._in_order():
            amount = discount_amount(entry.terms, left, entry.balance())
            if amount.amount > 0:
                planned.append((entry, amount))
                left = left - amount
        return planned

    def _in_order(self) -> list[AttachedCoupon]:
        live = [c for c in self.state.coupons if not c.is_spent()]
        percents = [c for c in live if c.terms.percent_off is not None]
        return percents + [c for c in live if c.terms.percent_off is None]

    def _record(
        self, invoice_id: UUID, entry: AttachedCoupon, amount: Money, cause: Cause, counts: bool
    ) -> None:
        balance = entry.balance()
        repeating = entry.terms.duration is CouponDuration.REPEATING
        carried = balance - amount if entry.terms.carry_forward and balance is not None else None
        self._trigger(
            DiscountApplied,
            cause,
            subscription_id=self.state.subscription_id,
            invoice_id=invoice_id,
            code=entry.code,
            amount=amount,
            invoices_applied=entry.invoices_applied + (1 if counts or not repeating else 0),
            carried_forward=carried,
        )
