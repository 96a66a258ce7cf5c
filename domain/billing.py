"""What is due: the billing points of a subscription and the lines of their invoices.

A billing point is the instant an invoice falls due (docs/pricing.md "Billing points"):
- base fee in advance (the default): at the start of every paid period (the start, or the
  trial's end, then each renewal), for that period's fee, with the usage of the paid period
  that just ended;
- base fee in arrears: at the end of every paid period, for its fee and its usage;
- the end of a subscription (canceled or expired): the usage of the last period up to the
  end, the prorations pending and the fee for the time used unless it was billed in advance
  (time used ends at the pause when it ended while paused; in arrears, a period that ended
  before it and was not invoiced yet is billed at its own point first).
Usage is always billed in arrears; usage during a trial is not billed. A paused subscription
has no billing point (its period is moved on by the paused time when it resumes). Pending
proration items go on the next invoice. Everything here is pure: the application layer
reads usage and saves the invoice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from domain.base import stable_id
from domain.catalog import FeatureKind, FeatureSpec, PlanTerms, included_units
from domain.invoice import InvoiceLine, LineKind, UsageEvidence
from domain.money import Money, round_half_up
from domain.period import Period
from domain.pricing import Quantity, Rating, rate_feature
from domain.subscription import TERMINAL, Status, SubscriptionState

PointKind = Literal["period", "final"]


class BillingPoint(BaseModel):
    """One invoice's worth of a subscription: its instant and the periods it bills."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime
    kind: PointKind = "period"
    fee_period: Period | None = None
    fee_share: tuple[int, int] = (1, 1)  # the part of the fee period billed
    usage_period: Period | None = None
    fee_terms: PlanTerms  # the terms in force for the fee period
    usage_terms: PlanTerms  # the terms in force at the end of the usage period

    @property
    def period(self) -> Period | None:
        """The invoice's period: the usage it bills, else the fee's period."""
        return self.usage_period or self.fee_period


class UsageTotal(BaseModel):
    """The metered quantity of one feature over a usage period, with its evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature_key: str
    meter: str
    quantity: int
    events: int = 0
    event_ids: list[str] = Field(default_factory=list)
    cutoff_position: int | None = None
    first_position: int | None = None
    last_position: int | None = None
    first_at: str | None = None
    last_at: str | None = None


def subscription_invoice_id(app_id: str, subscription_id: UUID, point: datetime) -> UUID:
    """The one invoice of a billing point: the same run twice finds it already made."""
    return stable_id("subscription-invoice", app_id, str(subscription_id), point.isoformat())


def next_billing_point(state: SubscriptionState) -> BillingPoint | None:
    """The earliest billing point not invoiced yet (it is never in the future), or None."""
    if state.status in TERMINAL:
        # in arrears a period renewed before the end is billed at its own point first
        unbilled = None if _is_advance(state) else _arrears_point(state)
        return unbilled or _final_point(state)
    if state.status not in (Status.ACTIVE, Status.PAST_DUE) or not state.paid_period:
        return None
    if _is_advance(state):
        return _advance_point(state)
    return _arrears_point(state)


def _invoiced(state: SubscriptionState, point: datetime) -> bool:
    return state.invoiced_through is not None and state.invoiced_through >= point


def _is_advance(state: SubscriptionState) -> bool:
    return state.terms.base_fee_timing == "in_advance"


def _unbilled_previous(state: SubscriptionState) -> Period | None:
    previous = state.previous_period
    return previous if previous is not None and not _invoiced(state, previous.end) else None


def _advance_point(state: SubscriptionState) -> BillingPoint | None:
    current = state.current_period
    if _invoiced(state, current.start):
        return None
    usage = _unbilled_previous(state)
    return BillingPoint(
        at=current.start,
        fee_period=current,
        usage_period=usage if usage is not None and usage.end == current.start else None,
        fee_terms=state.terms,
        usage_terms=state.previous_terms or state.terms,
    )


def _arrears_point(state: SubscriptionState) -> BillingPoint | None:
    previous = _unbilled_previous(state)
    if previous is None:
        return None
    terms = state.previous_terms or state.terms
    return BillingPoint(
        at=previous.end,
        fee_period=previous,
        usage_period=previous,
        fee_terms=terms,
        usage_terms=terms,
    )


def _final_point(state: SubscriptionState) -> BillingPoint | None:
    """A canceled or expired subscription's last invoice: usage up to the end, pending
    prorations, and the fee for the time used unless it was billed in advance."""
    at = state.ended_at
    if at is None or not state.paid_period or _invoiced(state, at):
        return None
    end = _end_of_use(state, at)
    current = state.current_period
    previous = _unbilled_previous(state) if _is_advance(state) else None
    start = previous.start if previous is not None else current.start
    used = Period(start=start, end=end) if end > start else None
    if used is None and not state.pending_prorations:
        return None
    fee_due = not _is_advance(state) or not _invoiced(state, current.start)
    fee_used = Period(start=current.start, end=end) if end > current.start else None
    return BillingPoint(
        at=at,
        kind="final",
        fee_period=current if fee_due and fee_used is not None else None,
        fee_share=current.fraction(fee_used) if fee_used is not None else (0, 1),
        usage_period=used,
        fee_terms=state.terms,
        usage_terms=state.terms,
    )


def _end_of_use(state: SubscriptionState, ended_at: datetime) -> datetime:
    """The end of the time used: a subscription that ended while paused was last used when
    it was paused (paused time is not billed)."""
    paused = state.paused_at
    return paused if paused is not None and paused < ended_at else ended_at


def upcoming_point(state: SubscriptionState) -> BillingPoint | None:
    """The billing point of the next invoice as things stand (for a preview): one already
    due, else the end of the current period as if it renewed (or ended) then."""
    due = next_billing_point(state)
    if due is not None or state.status not in (Status.ACTIVE, Status.PAST_DUE, Status.TRIALING):
        return due
    current, terms = state.current_period, state.terms
    if not state.paid_period:  # a trial: in advance, the first fee at its end
        if not _is_advance(state) or state.cancel_at_period_end:
            return None
        first = Period.starting(current.end, terms.interval, timezone=state.timezone)
        return BillingPoint(at=current.end, fee_period=first, fee_terms=terms, usage_terms=terms)
    if state.cancel_at_period_end or not _is_advance(state):
        fee = None if _is_advance(state) else current
        kind: PointKind = "final" if state.cancel_at_period_end else "period"
        return BillingPoint(
            at=current.end,
            kind=kind,
            fee_period=fee,
            usage_period=current,
            fee_terms=terms,
            usage_terms=terms,
        )
    after = state.scheduled_terms or terms
    following = current.following(after.interval, state.anchor_day, state.timezone)
    return BillingPoint(
        at=current.end,
        fee_period=following,
        usage_period=current,
        fee_terms=after,
        usage_terms=terms,
    )


# --- the lines of a billing point ---------------------------------------------------------


def priced_features(terms: PlanTerms) -> list[FeatureSpec]:
    """The metered features whose usage is priced (they have an overage model)."""
    return [f for f in terms.features if f.kind is FeatureKind.METERED and f.overage]


def fee_lines(state: SubscriptionState, point: BillingPoint) -> list[InvoiceLine]:
    """The base fee and the seats of the point's fee period (a share of it at a final
    invoice in arrears: the time used)."""
    period = point.fee_period
    if period is None:
        return []
    terms = point.fee_terms
    share = Fraction(*point.fee_share)
    price = terms.price_for(state.pricing_zone)
    sources = list(state.period_event_ids)
    lines = [
        _line(
            "base_fee",
            LineKind.BASE_FEE,
            f"{terms.name}",
            1,
            price,
            price.scale(share),
            period,
            sources,
        )
    ]
    seat = terms.seat_price()
    if seat is not None:
        amount = (seat * state.seats).scale(share)
        lines.append(
            _line(
                "seats",
                LineKind.SEATS,
                f"{terms.name} seats",
                state.seats,
                seat,
                amount,
                period,
                sources,
            )
        )
    return lines


def commitment_basis(state: SubscriptionState, point: BillingPoint) -> tuple[Money, Money] | None:
    """(the minimum spend, the fees it counts) of the point's period, when a minimum applies:
    at the end of a whole billing period (a cancel at the period's end included), the base
    fee and seats at their full price. A period cut short by a cancel has none."""
    terms = point.usage_terms
    minimum, period = terms.minimum_spend, point.usage_period
    whole = point.kind == "period" or period == state.current_period
    if minimum is None or period is None or not whole:
        return None
    fees = terms.price_for(state.pricing_zone)
    seat = terms.seat_price()
    if seat is not None:
        fees = fees + seat * state.seats
    return minimum, fees


def commitment_lines(
    state: SubscriptionState, point: BillingPoint, usage: Sequence[InvoiceLine]
) -> list[InvoiceLine]:
    """The true-up of a minimum spend (`minimum_spend` of the usage period's terms): the
    period's fees (`commitment_basis`) plus its usage lines, before discounts and tax; what
    falls short of the minimum is billed. Prorations are not counted (docs/pricing.md)."""
    basis = commitment_basis(state, point)
    if basis is None or point.usage_period is None:
        return []
    minimum, fees = basis
    spend = sum((line.amount for line in usage), fees)
    if spend.amount >= minimum.amount:
        return []
    shortfall = minimum - spend
    terms = point.usage_terms
    description = f"{terms.name}: minimum spend {minimum.amount} {minimum.currency}, true-up"
    return [
        _line(
            "commitment_true_up",
            LineKind.COMMITMENT_TRUE_UP,
            description,
            1,
            shortfall,
            shortfall,
            point.usage_period,
            list(state.period_event_ids),
        )
    ]


FeatureRater = Callable[[FeatureSpec, Quantity], Rating | None]
"""Prices one feature's usage (default: rate_feature; a PricingStrategy plugin may replace it)."""


def usage_lines(
    point: BillingPoint, usage: Mapping[str, UsageTotal], rate: FeatureRater = rate_feature
) -> list[InvoiceLine]:
    """One line per tier, package step or unit price reached, for each priced feature."""
    if point.usage_period is None:
        return []
    lines: list[InvoiceLine] = []
    for spec in priced_features(point.usage_terms):
        total = usage.get(spec.key)
        if total is None:
            continue
        rating = rate(spec, total.quantity)
        if rating is not None:
            lines += _rated_lines(spec, total, rating, point.usage_period)
    return lines


def rated_lines(
    spec: FeatureSpec, total: UsageTotal, period: Period, rate: FeatureRater = rate_feature
) -> list[InvoiceLine]:
    """The usage lines of one feature's total over a period (none without overage model)."""
    rating = rate(spec, total.quantity)
    return [] if rating is None else _rated_lines(spec, total, rating, period)


def _rated_lines(
    spec: FeatureSpec, total: UsageTotal, rating: Rating, period: Period
) -> list[InvoiceLine]:
    evidence = UsageEvidence(
        **total.model_dump(exclude={"event_ids"}), included=included_units(spec), spec=spec
    )
    lines = []
    for index, rated in enumerate(rating.lines):
        unit = Money(amount=_rounded_unit(rated.unit_price), currency=rated.amount.currency)
        quantity = int(rated.quantity)  # plain usage events count whole units
        line = _line(
            f"usage:{spec.key}:{index}",
            LineKind.USAGE,
            f"{spec.key}: {rated.description}",
            quantity,
            unit,
            rated.amount,
            period,
            total.event_ids,
        )
        lines.append(
            line.model_copy(update={"unit_amount_decimal": rated.unit_price, "usage": evidence})
        )
    return lines


def proration_lines(state: SubscriptionState) -> list[InvoiceLine]:
    """The pending proration items, in the order they were recorded."""
    return [
        _line(
            f"proration:{index}",
            LineKind(item.kind),
            item.description,
            item.quantity,
            item.unit_amount,
            item.amount,
            item.window,
            item.source_event_ids,
        )
        for index, item in enumerate(state.pending_prorations)
    ]


def discount_line(
    index: int, description: str, amount: Money, sources: Sequence[str]
) -> InvoiceLine:
    """A discount (amount is the positive reduction) as its negative line."""
    return _line(
        f"discount:{index}", LineKind.DISCOUNT, description, 1, -amount, -amount, None, sources
    )


def _line(
    line_id: str,
    kind: LineKind,
    description: str,
    quantity: int,
    unit: Money,
    amount: Money,
    period: Period | None,
    sources: Sequence[str],
) -> InvoiceLine:
    return InvoiceLine(
        line_id=line_id,
        kind=kind,
        description=description[:500],
        quantity=quantity,
        unit_amount=unit,
        amount=amount,
        period=period,
        source_event_ids=list(sources)[:1000],
    )


def _rounded_unit(unit_price: str) -> int:
    return round_half_up(Fraction(Decimal(unit_price)))
