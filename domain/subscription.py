"""Subscription aggregate: a tenant's life on a plan, from trial to cancel or expiry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import Field

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.billed_usage import KEPT_FOR, BilledUsage, UsageAdjustment
from domain.catalog import PlanTerms
from domain.errors import (
    InvalidTransition,
    InvalidValue,
    SubscriptionAlreadyActive,
    with_article,
)
from domain.money import Money
from domain.period import Interval, Period, add_interval, local_day
from domain.proration import (
    ProrationItem,
    ProrationMode,
    ProrationUnit,
    credit_unused,
    prorate,
)


class Status(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELED = "canceled"
    EXPIRED = "expired"
    UNPAID = "unpaid"  # dunning gave up and the app keeps the subscription: nothing renews


TERMINAL = frozenset({Status.CANCELED, Status.EXPIRED})

LIVE = frozenset({Status.TRIALING, Status.ACTIVE, Status.PAST_DUE})
"""Statuses whose subscriptions grant their plan's features and may change plan or seats."""

RUNNING = LIVE | {Status.PAUSED}
"""Statuses of subscriptions that have not ended (a paused one resumes; an unpaid one does not
renew, and revenue no longer counts it)."""

PAYING = frozenset({Status.ACTIVE, Status.PAST_DUE})
"""Statuses whose subscriptions count in MRR/ARR, and whose end is churn."""

ChangeTiming = Literal["now", "period_end"]


class SubscriptionState(AggregateState):
    tenant_id: str
    terms: PlanTerms
    status: Status
    current_period: Period
    price: Money
    pricing_zone: str | None = None
    trial_end: datetime | None = None
    cancel_at_period_end: bool = False
    scheduled_terms: PlanTerms | None = None
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    paused_at: datetime | None = None
    anchor_day: int
    timezone: str = "UTC"
    seats: int = 1
    paid_period: bool = True  # False while the current period is a trial
    previous_period: Period | None = None  # the paid period before the current one
    previous_terms: PlanTerms | None = None  # the terms in force at its end
    invoiced_through: datetime | None = None  # the last billing point invoiced
    recent_invoices: list[UUID] = Field(default_factory=list)  # the last RECENT_INVOICES
    billed_usage: list[BilledUsage] = Field(default_factory=list)  # still correctable
    interim_period: Period | None = None  # the period interim invoices last billed usage of
    interim_billed: Money | None = None  # usage of interim_period billed on interim invoices
    thresholds_invoiced: int = 0  # progressive thresholds of interim_period invoiced
    pending_prorations: list[ProrationItem] = Field(default_factory=list)
    period_event_ids: list[str] = Field(default_factory=list)  # what shaped this period


def _pending(items: list[ProrationItem], event_id: object) -> list[ProrationItem]:
    """Proration items as recorded, citing the event that caused them."""
    return [i.model_copy(update={"source_event_ids": [str(event_id)]}) for i in items]


class SubscriptionEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "subscription"


class SubscriptionStarted(SubscriptionEvent, CreatedEvent):
    NAME: ClassVar[str] = "SubscriptionStarted"
    terms: PlanTerms
    status: Status
    period: Period
    price: Money
    pricing_zone: str | None = None
    trial_end: datetime | None = None
    timezone: str = "UTC"
    seats: int = 1

    def apply(self, aggregate: Any) -> None:
        aggregate.state = SubscriptionState(
            app_id=self.app_id,
            tenant_id=self.tenant_id or "",
            terms=self.terms,
            status=self.status,
            current_period=self.period,
            price=self.price,
            pricing_zone=self.pricing_zone,
            trial_end=self.trial_end,
            anchor_day=local_day(self.period.start, self.timezone),
            timezone=self.timezone,
            seats=self.seats,
            paid_period=self.status is not Status.TRIALING,
            period_event_ids=[str(self.event_id)],
        )


class TrialEnded(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionTrialEnded"
    period: Period

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.status = Status.ACTIVE
        state.current_period = self.period
        state.anchor_day = local_day(self.period.start, state.timezone)
        state.paid_period = True
        state.period_event_ids = [str(self.event_id)]


class CancellationScheduled(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionCancellationScheduled"
    cancel_at: datetime

    def apply(self, aggregate: Any) -> None:
        aggregate.state.cancel_at_period_end = True


class CancellationUndone(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionCancellationUndone"

    def apply(self, aggregate: Any) -> None:
        aggregate.state.cancel_at_period_end = False


class SubscriptionCanceled(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionCanceled"
    reason: str | None = None
    previous_status: Status
    price: Money
    prorations: list[ProrationItem] = Field(default_factory=list)

    def apply(self, aggregate: Any) -> None:
        aggregate.state.pending_prorations += _pending(self.prorations, self.event_id)
        aggregate.state.status = Status.CANCELED
        aggregate.state.canceled_at = self.timestamp
        aggregate.state.ended_at = self.timestamp
        aggregate.state.cancel_at_period_end = False


class PlanChanged(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionPlanChanged"
    from_terms: PlanTerms
    to_terms: PlanTerms
    old_price: Money
    new_price: Money
    period: Period  # the period in progress, for proration
    proration: ProrationMode = "create_prorations"
    prorations: list[ProrationItem] = Field(default_factory=list)

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.terms = self.to_terms
        state.price = self.new_price
        state.scheduled_terms = None
        state.pending_prorations += _pending(self.prorations, self.event_id)
        state.period_event_ids.append(str(self.event_id))


class SeatsChanged(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionSeatsChanged"
    from_seats: int
    to_seats: int
    seat_price: Money | None = None
    proration: ProrationMode = "create_prorations"
    prorations: list[ProrationItem] = Field(default_factory=list)

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.seats = self.to_seats
        state.pending_prorations += _pending(self.prorations, self.event_id)
        state.period_event_ids.append(str(self.event_id))


RECENT_INVOICES = 40
"""How many of its latest invoices a subscription remembers (late usage is corrected on the
next invoice for up to 35 days: 40 covers daily periods)."""


class SubscriptionInvoiced(SubscriptionEvent):
    """The invoice of a billing point was drafted; its pending prorations are on it."""

    NAME: ClassVar[str] = "SubscriptionInvoiced"
    point: datetime | None = None  # None for an immediate proration invoice
    invoice_id: UUID
    prorations_billed: int = 0
    usage: list[BilledUsage] = Field(default_factory=list)  # what it billed of usage
    adjustments: list[UsageAdjustment] = Field(default_factory=list)  # late usage corrected

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        if self.point is not None:
            state.invoiced_through = self.point
        state.pending_prorations = state.pending_prorations[self.prorations_billed :]
        state.recent_invoices = [*state.recent_invoices, self.invoice_id][-RECENT_INVOICES:]
        kept = [u for u in state.billed_usage if u.period.end + KEPT_FOR > self.timestamp]
        state.billed_usage = [_adjusted(u, self.adjustments) for u in kept] + self.usage


def _adjusted(billed: BilledUsage, adjustments: list[UsageAdjustment]) -> BilledUsage:
    """The billed usage with the adjustments made for it added up."""
    mine = [
        a.amount
        for a in adjustments
        if (a.invoice_id, a.feature_key) == (billed.invoice_id, billed.feature_key)
    ]
    if not mine:
        return billed
    total = sum(mine, billed.adjusted or Money.zero(billed.amount.currency))
    return billed.model_copy(update={"adjusted": total})


class PlanChangeScheduled(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionPlanChangeScheduled"
    to_terms: PlanTerms
    effective_at: datetime

    def apply(self, aggregate: Any) -> None:
        aggregate.state.scheduled_terms = self.to_terms


class SubscriptionPaused(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionPaused"
    price: Money

    def apply(self, aggregate: Any) -> None:
        aggregate.state.status = Status.PAUSED
        aggregate.state.paused_at = self.timestamp


class SubscriptionResumed(SubscriptionEvent):
    """`period`: the current period moved on by the paused time (paused time is not billed);
    None in events from before that rule."""

    NAME: ClassVar[str] = "SubscriptionResumed"
    price: Money
    period: Period | None = None

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.status = Status.ACTIVE
        state.paused_at = None
        if self.period is not None:
            if state.interim_period == state.current_period:  # the same open period, longer
                state.interim_period = self.period
            state.current_period = self.period
            state.anchor_day = local_day(self.period.end, state.timezone)
            state.period_event_ids.append(str(self.event_id))


class SubscriptionRenewed(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionRenewed"
    period: Period
    terms: PlanTerms
    price: Money

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        if state.paid_period:
            state.previous_period = state.current_period
            state.previous_terms = state.terms
        state.current_period = self.period
        state.terms = self.terms
        state.price = self.price
        state.scheduled_terms = None
        state.paid_period = True
        state.period_event_ids = [str(self.event_id)]


class InterimInvoiced(SubscriptionEvent):
    """Progressive billing: usage accrued in the open period crossed a threshold, and an
    interim invoice billed it (`accrued`: the period's usage amount billed so far)."""

    NAME: ClassVar[str] = "SubscriptionInterimInvoiced"
    invoice_id: UUID
    period: Period
    accrued: Money
    thresholds_invoiced: int

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.interim_period = self.period
        state.interim_billed = self.accrued
        state.thresholds_invoiced = self.thresholds_invoiced
        state.recent_invoices = [*state.recent_invoices, self.invoice_id][-RECENT_INVOICES:]


class MarkedPastDue(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionMarkedPastDue"
    reason: str | None = None

    def apply(self, aggregate: Any) -> None:
        aggregate.state.status = Status.PAST_DUE


class PaymentRecovered(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionPaymentRecovered"

    def apply(self, aggregate: Any) -> None:
        aggregate.state.status = Status.ACTIVE


class MarkedUnpaid(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionMarkedUnpaid"
    reason: str | None = None

    def apply(self, aggregate: Any) -> None:
        aggregate.state.status = Status.UNPAID


class SubscriptionExpired(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionExpired"
    previous_status: Status
    price: Money

    def apply(self, aggregate: Any) -> None:
        aggregate.state.status = Status.EXPIRED
        aggregate.state.ended_at = self.timestamp


class Subscription(Aggregate[SubscriptionState]):
    """A tenant's subscription to one plan version of an app."""

    TYPE: ClassVar[str] = "subscription"
    State = SubscriptionState

    @classmethod
    def start(
        cls,
        subscription_id: UUID,
        app_id: str,
        tenant_id: str,
        terms: PlanTerms,
        cause: Cause,
        *,
        trial: bool = True,
        pricing_zone: str | None = None,
        timezone: str = "UTC",
        seats: int = 1,
    ) -> Subscription:
        """Start now; periods follow the tenant's `timezone` (its billing profile)."""
        now = cause.occurred_at
        in_trial = trial and terms.trial_days > 0
        if in_trial:
            trial_end = add_interval(now, Interval.DAY, terms.trial_days, timezone=timezone)
            period = Period(start=now, end=trial_end)
        else:
            trial_end = None
            period = Period.starting(now, terms.interval, timezone=timezone)
        _check_seats(seats)
        if pricing_zone is not None and pricing_zone not in terms.price_overrides:
            zones = ", ".join(sorted(terms.price_overrides)) or "none"
            raise InvalidValue(
                f"plan {terms.plan_key} has no price for zone {pricing_zone!r} (zones: {zones})",
                field="pricing_zone",
            )
        return cls._create(
            SubscriptionStarted,
            subscription_id,
            cause,
            app_id=app_id,
            tenant_id=tenant_id,
            terms=terms,
            status=Status.TRIALING if in_trial else Status.ACTIVE,
            period=period,
            price=terms.price_for(pricing_zone),
            pricing_zone=pricing_zone,
            trial_end=trial_end,
            timezone=timezone,
            seats=seats,
        )

    @property
    def status(self) -> Status:
        return self.state.status

    def end_trial(self, cause: Cause) -> None:
        """Trial over (by the clock or early): the first paid period starts now, unless a
        cancel was scheduled for the trial's end (then it ends unbilled, as Stripe does)."""
        self._require(Status.TRIALING, action="end the trial")
        if self.state.cancel_at_period_end:
            self._trigger(
                SubscriptionCanceled,
                cause,
                reason="scheduled cancel at trial end",
                previous_status=self.status,
                price=self.state.price,
            )
            return
        start = min(cause.occurred_at, self.state.trial_end or cause.occurred_at)
        period = Period.starting(start, self.state.terms.interval, timezone=self.state.timezone)
        self._trigger(TrialEnded, cause, period=period)

    def cancel(
        self,
        cause: Cause,
        *,
        at_period_end: bool = False,
        reason: str | None = None,
        proration: ProrationMode = "none",
        unit: ProrationUnit = "second",
    ) -> None:
        """Cancel now (optionally crediting the unused time of a fee paid in advance) or
        schedule the cancel for the period end."""
        if at_period_end:
            self._require(*LIVE, action="schedule a cancel")
            if self.state.cancel_at_period_end:
                raise InvalidTransition("a cancel is already scheduled", field="at_period_end")
            self._trigger(CancellationScheduled, cause, cancel_at=self.state.current_period.end)
            return
        self._require(*LIVE, Status.PAUSED, Status.UNPAID, action="cancel")
        self._trigger(
            SubscriptionCanceled,
            cause,
            reason=reason,
            previous_status=self.status,
            price=self.state.price,
            prorations=self._cancel_credits(cause.occurred_at, proration, unit),
        )

    def _cancel_credits(
        self, at: datetime, proration: ProrationMode, unit: ProrationUnit
    ) -> list[ProrationItem]:
        state = self.state
        if proration == "none" or not state.paid_period:
            return []
        if state.terms.base_fee_timing != "in_advance" or not self._fee_billed():
            return []  # in arrears the final invoice charges only the time used
        if state.paused_at is not None:
            at = min(at, max(state.paused_at, state.current_period.start))  # paused: unused
        items: list[ProrationItem] = []
        for label, price in self._fees():
            items += credit_unused(
                state.current_period, at, (label, price), unit=unit, timezone=state.timezone
            )
        return items

    def _fee_billed(self) -> bool:
        """Whether the current period's fee was already invoiced (in advance)."""
        through = self.state.invoiced_through
        return through is not None and through >= self.state.current_period.start

    def _fees(self, terms: PlanTerms | None = None, seats: int | None = None) -> list[Fee]:
        """The recurring fees of the subscription: the base price and the seats."""
        state = self.state
        terms = terms or state.terms
        price = terms.price_for(state.pricing_zone)
        fees: list[Fee] = [(f"{terms.name} (v{terms.version})", price)]
        seat_price = terms.seat_price()
        if seat_price is not None:
            count = state.seats if seats is None else seats
            fees.append((f"{count} x {terms.name} seat", seat_price * count))
        return fees

    def undo_cancel(self, cause: Cause) -> None:
        self._require(*LIVE, action="undo a scheduled cancel")
        if not self.state.cancel_at_period_end:
            raise InvalidTransition("no cancel is scheduled", field="subscription_id")
        self._trigger(CancellationUndone, cause)

    def change_plan(
        self,
        to_terms: PlanTerms,
        cause: Cause,
        timing: ChangeTiming = "now",
        *,
        proration: ProrationMode = "create_prorations",
        unit: ProrationUnit = "second",
    ) -> None:
        """Upgrade now (prorated: credit the unused old price, charge the new one for the
        rest of the period) or switch at period end."""
        self._require(*LIVE, action="change plan")
        current = self.state.terms
        if (to_terms.plan_key, to_terms.version) == (current.plan_key, current.version):
            raise InvalidTransition("already on this plan version", field="plan_key")
        new_price = to_terms.price_for(self.state.pricing_zone)
        if new_price.currency != self.state.price.currency:
            raise InvalidValue("a plan change keeps the currency", field="plan_key")
        if to_terms.base_fee_timing != current.base_fee_timing:
            raise InvalidValue(
                "a plan change keeps the base fee timing (in advance or in arrears): cancel "
                "and start a new subscription to switch",
                field="plan_key",
            )
        if timing == "period_end":
            self._trigger(
                PlanChangeScheduled,
                cause,
                to_terms=to_terms,
                effective_at=self.state.current_period.end,
            )
            return
        items = self._reprice(
            cause.occurred_at, self._fees(), self._fees(to_terms), proration, unit
        )
        self._trigger(
            PlanChanged,
            cause,
            from_terms=current,
            to_terms=to_terms,
            old_price=self.state.price,
            new_price=new_price,
            period=self.state.current_period,
            proration=proration,
            prorations=items,
        )

    def change_seats(
        self,
        quantity: int,
        cause: Cause,
        *,
        proration: ProrationMode = "create_prorations",
        unit: ProrationUnit = "second",
    ) -> None:
        """Change the number of seats now, prorating the seat fee for the rest of the period."""
        self._require(*LIVE, action="change seats")
        _check_seats(quantity)
        if quantity == self.state.seats:
            raise InvalidTransition(
                f"the subscription already has {quantity} seats", field="quantity"
            )
        seats = self.state.terms.seats_feature()
        limit = seats.limit if seats is not None else None
        if limit is not None and quantity > limit:
            raise InvalidValue(f"the plan allows at most {limit} seats", field="quantity")
        old, new = self._fees()[1:], self._fees(seats=quantity)[1:]
        self._trigger(
            SeatsChanged,
            cause,
            from_seats=self.state.seats,
            to_seats=quantity,
            seat_price=self.state.terms.seat_price(),
            proration=proration,
            prorations=self._reprice(cause.occurred_at, old, new, proration, unit),
        )

    def _reprice(
        self,
        at: datetime,
        old: list[Fee],
        new: list[Fee],
        proration: ProrationMode,
        unit: ProrationUnit,
    ) -> list[ProrationItem]:
        """Proration items for moving from the `old` fees to the `new` ones at `at`."""
        state = self.state
        if proration == "none" or not state.paid_period:
            return []
        timing = state.terms.base_fee_timing
        if timing == "in_advance" and not self._fee_billed():
            # the period's invoice is still to come and will charge the new fees for all of
            # it: correct the time before the change as in arrears
            timing = "in_arrears"
        items: list[ProrationItem] = []
        for before, after in _pairs(old, new):
            if before[1] == after[1]:
                continue  # an unchanged fee (the seats of a plan change) is not prorated
            charged, due = (before, after) if timing == "in_advance" else (after, before)
            items += prorate(
                state.current_period,
                at,
                charged,
                due,
                timing=timing,
                unit=unit,
                timezone=state.timezone,
            )
        return items

    def pause(self, cause: Cause) -> None:
        self._require(Status.ACTIVE, action="pause")
        self._trigger(SubscriptionPaused, cause, price=self.state.price)

    def resume(self, cause: Cause) -> None:
        """Resume; the current period ends later by the time paused (not billed)."""
        self._require(Status.PAUSED, action="resume")
        state = self.state
        current = state.current_period
        moved: Period | None = None
        if state.paused_at is not None and state.paused_at < current.end:
            paused = cause.occurred_at - max(state.paused_at, current.start)
            if paused > timedelta(0):
                moved = Period(start=current.start, end=current.end + paused)
        self._trigger(SubscriptionResumed, cause, price=state.price, period=moved)

    def renew(self, cause: Cause) -> None:
        """At period end: cancel if scheduled, else start the next period (applying a
        scheduled plan change)."""
        self._require(Status.ACTIVE, Status.PAST_DUE, action="renew")
        if cause.occurred_at < self.state.current_period.end:
            raise InvalidTransition("the current period has not ended", field="until")
        if self.state.cancel_at_period_end:
            self._trigger(
                SubscriptionCanceled,
                cause,
                reason="scheduled cancel at period end",
                previous_status=self.status,
                price=self.state.price,
            )
            return
        terms = self.state.scheduled_terms or self.state.terms
        period = self.state.current_period.following(
            terms.interval, self.state.anchor_day, self.state.timezone
        )
        self._trigger(
            SubscriptionRenewed,
            cause,
            period=period,
            terms=terms,
            price=terms.price_for(self.state.pricing_zone),
        )

    def record_invoice(
        self,
        invoice_id: UUID,
        cause: Cause,
        point: datetime | None,
        prorations_billed: int,
        usage: Sequence[BilledUsage] = (),
        adjustments: Sequence[UsageAdjustment] = (),
    ) -> None:
        """An invoice now holds this billing point (or, with no point, the first
        `prorations_billed` pending prorations), the usage it billed and the late-usage
        adjustments it made."""
        if not 0 <= prorations_billed <= len(self.state.pending_prorations):
            raise InvalidValue("more prorations billed than pending", field="prorations")
        self._trigger(
            SubscriptionInvoiced,
            cause,
            point=point,
            invoice_id=invoice_id,
            prorations_billed=prorations_billed,
            usage=list(usage),
            adjustments=list(adjustments),
        )

    def record_interim_invoice(
        self, invoice_id: UUID, accrued: Money, thresholds_invoiced: int, cause: Cause
    ) -> None:
        """An interim invoice billed the open period's usage up to `accrued` (progressive
        billing); the period's own invoice deducts it."""
        period = self.state.current_period
        if period is None:
            raise InvalidTransition("no open period to bill in advance", field="subscription_id")
        if thresholds_invoiced <= self.thresholds_invoiced(period):
            raise InvalidValue("no new threshold was crossed", field="thresholds")
        self._trigger(
            InterimInvoiced,
            cause,
            invoice_id=invoice_id,
            period=period,
            accrued=accrued,
            thresholds_invoiced=thresholds_invoiced,
        )

    def thresholds_invoiced(self, period: Period) -> int:
        """How many progressive thresholds interim invoices already billed in `period`."""
        state = self.state
        return state.thresholds_invoiced if state.interim_period == period else 0

    def mark_past_due(self, cause: Cause, reason: str | None = None) -> None:
        self._require(Status.ACTIVE, action="mark past due")
        self._trigger(MarkedPastDue, cause, reason=reason)

    def mark_unpaid(self, cause: Cause, reason: str | None = None) -> None:
        """Dunning gave up and the app keeps the subscription: nothing renews until paid."""
        self._require(Status.ACTIVE, Status.PAST_DUE, action="mark unpaid")
        self._trigger(MarkedUnpaid, cause, reason=reason)

    def recover_payment(self, cause: Cause) -> None:
        self._require(Status.PAST_DUE, Status.UNPAID, action="recover payment")
        self._trigger(PaymentRecovered, cause)

    def expire(self, cause: Cause) -> None:
        self._require(*LIVE, Status.PAUSED, Status.UNPAID, action="expire")
        self._trigger(
            SubscriptionExpired, cause, previous_status=self.status, price=self.state.price
        )

    def is_live(self) -> bool:
        return self.status not in TERMINAL

    def _require(self, *allowed: Status, action: str) -> None:
        if self.status not in allowed:
            names = ", ".join(sorted(s.value for s in allowed))
            raise InvalidTransition(
                f"cannot {action} {with_article(self.status.value)} subscription "
                f"(allowed from: {names})",
                field="status",
                status=self.status.value,
            )


Fee = tuple[str, Money]
MAX_SEATS = 1_000_000


def _check_seats(quantity: int) -> None:
    if isinstance(quantity, bool) or not 1 <= quantity <= MAX_SEATS:
        raise InvalidValue(f"seats run from 1 to {MAX_SEATS}", field="quantity")


def _pairs(old: list[Fee], new: list[Fee]) -> list[tuple[Fee, Fee]]:
    """Fees matched by position (base with base, seats with seats); a fee that appears or
    disappears is paired with a zero one."""
    if not old and not new:
        return []
    currency = (old or new)[0][1].currency
    size = max(len(old), len(new))
    padded_old = old + [(label, Money.zero(currency)) for label, _ in new[len(old) :]]
    padded_new = new + [(label, Money.zero(currency)) for label, _ in old[len(new) :]]
    return list(zip(padded_old[:size], padded_new[:size], strict=True))


def tenant_slot_id(app_id: str, tenant_id: str) -> UUID:
    return stable_id("tenant-slot", app_id, tenant_id)


class SlotState(AggregateState):
    tenant_id: str
    subscription_id: UUID


class TenantSlotEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "tenant_slot"


class SlotOpened(TenantSlotEvent, CreatedEvent):
    NAME: ClassVar[str] = "TenantSlotOpened"
    subscription_id: UUID

    def apply(self, aggregate: Any) -> None:
        aggregate.state = SlotState(
            app_id=self.app_id, tenant_id=self.tenant_id or "", subscription_id=self.subscription_id
        )


class SlotReassigned(TenantSlotEvent):
    NAME: ClassVar[str] = "TenantSlotReassigned"
    subscription_id: UUID

    def apply(self, aggregate: Any) -> None:
        aggregate.state.subscription_id = self.subscription_id


class TenantSlot(Aggregate[SlotState]):
    """Guards 'one live subscription per tenant per app' across concurrent starts."""

    TYPE: ClassVar[str] = "tenant_slot"
    State = SlotState

    @classmethod
    def open(cls, app_id: str, tenant_id: str, subscription_id: UUID, cause: Cause) -> TenantSlot:
        return cls._create(
            SlotOpened,
            tenant_slot_id(app_id, tenant_id),
            cause,
            app_id=app_id,
            tenant_id=tenant_id,
            subscription_id=subscription_id,
        )

    def reassign(self, current: Subscription | None, subscription_id: UUID, cause: Cause) -> None:
        """Point the slot at a new subscription; refused while the current one is live."""
        if current is not None and current.is_live():
            raise SubscriptionAlreadyActive(
                f"tenant {self.state.tenant_id} already has a live subscription "
                f"({current.status.value})",
                field="tenant_id",
                subscription_id=str(current.id),
            )
        self._trigger(SlotReassigned, cause, subscription_id=subscription_id)
