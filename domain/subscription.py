"""Subscription aggregate: a tenant's life on a plan, from trial to cancel or expiry."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Literal
from uuid import UUID

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.catalog import PlanTerms
from domain.errors import InvalidTransition, InvalidValue, SubscriptionAlreadyActive
from domain.money import Money
from domain.period import Period


class Status(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELED = "canceled"
    EXPIRED = "expired"


TERMINAL = frozenset({Status.CANCELED, Status.EXPIRED})
LIVE = frozenset({Status.TRIALING, Status.ACTIVE, Status.PAST_DUE})

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
            anchor_day=self.period.start.day,
        )


class TrialEnded(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionTrialEnded"
    period: Period

    def apply(self, aggregate: Any) -> None:
        aggregate.state.status = Status.ACTIVE
        aggregate.state.current_period = self.period
        aggregate.state.anchor_day = self.period.start.day


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

    def apply(self, aggregate: Any) -> None:
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

    def apply(self, aggregate: Any) -> None:
        aggregate.state.terms = self.to_terms
        aggregate.state.price = self.new_price
        aggregate.state.scheduled_terms = None


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
    NAME: ClassVar[str] = "SubscriptionResumed"
    price: Money

    def apply(self, aggregate: Any) -> None:
        aggregate.state.status = Status.ACTIVE
        aggregate.state.paused_at = None


class SubscriptionRenewed(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionRenewed"
    period: Period
    terms: PlanTerms
    price: Money

    def apply(self, aggregate: Any) -> None:
        aggregate.state.current_period = self.period
        aggregate.state.terms = self.terms
        aggregate.state.price = self.price
        aggregate.state.scheduled_terms = None


class MarkedPastDue(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionMarkedPastDue"
    reason: str | None = None

    def apply(self, aggregate: Any) -> None:
        aggregate.state.status = Status.PAST_DUE


class PaymentRecovered(SubscriptionEvent):
    NAME: ClassVar[str] = "SubscriptionPaymentRecovered"

    def apply(self, aggregate: Any) -> None:
        aggregate.state.status = Status.ACTIVE


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
    ) -> Subscription:
        now = cause.occurred_at
        in_trial = trial and terms.trial_days > 0
        if in_trial:
            trial_end = now + timedelta(days=terms.trial_days)
            period = Period(start=now, end=trial_end)
        else:
            trial_end = None
            period = Period.starting(now, terms.interval)
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
        )

    @property
    def status(self) -> Status:
        return self.state.status

    def end_trial(self, cause: Cause) -> None:
        """Trial over (by the clock or early): the first paid period starts now."""
        self._require(Status.TRIALING, action="end the trial")
        start = min(cause.occurred_at, self.state.trial_end or cause.occurred_at)
        self._trigger(TrialEnded, cause, period=Period.starting(start, self.state.terms.interval))

    def cancel(
        self, cause: Cause, *, at_period_end: bool = False, reason: str | None = None
    ) -> None:
        if at_period_end:
            self._require(*LIVE, action="schedule a cancel")
            if self.state.cancel_at_period_end:
                raise InvalidTransition("a cancel is already scheduled", field="at_period_end")
            self._trigger(CancellationScheduled, cause, cancel_at=self.state.current_period.end)
            return
        self._require(*LIVE, Status.PAUSED, action="cancel")
        self._trigger(
            SubscriptionCanceled,
            cause,
            reason=reason,
            previous_status=self.status,
            price=self.state.price,
        )

    def undo_cancel(self, cause: Cause) -> None:
        self._require(*LIVE, action="undo a scheduled cancel")
        if not self.state.cancel_at_period_end:
            raise InvalidTransition("no cancel is scheduled", field="subscription_id")
        self._trigger(CancellationUndone, cause)

    def change_plan(self, to_terms: PlanTerms, cause: Cause, timing: ChangeTiming = "now") -> None:
        """Upgrade now (billing prorates from the event) or switch at period end."""
        self._require(*LIVE, action="change plan")
        current = self.state.terms
        if (to_terms.plan_key, to_terms.version) == (current.plan_key, current.version):
            raise InvalidTransition("already on this plan version", field="plan_key")
        new_price = to_terms.price_for(self.state.pricing_zone)
        if new_price.currency != self.state.price.currency:
            raise InvalidValue("a plan change keeps the currency", field="plan_key")
        if timing == "period_end":
            self._trigger(
                PlanChangeScheduled,
                cause,
                to_terms=to_terms,
                effective_at=self.state.current_period.end,
            )
            return
        self._trigger(
            PlanChanged,
            cause,
            from_terms=current,
            to_terms=to_terms,
            old_price=self.state.price,
            new_price=new_price,
            period=self.state.current_period,
        )

    def pause(self, cause: Cause) -> None:
        self._require(Status.ACTIVE, action="pause")
        self._trigger(SubscriptionPaused, cause, price=self.state.price)

    def resume(self, cause: Cause) -> None:
        self._require(Status.PAUSED, action="resume")
        self._trigger(SubscriptionResumed, cause, price=self.state.price)

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
        self._trigger(
            SubscriptionRenewed,
            cause,
            period=self.state.current_period.following(terms.interval, self.state.anchor_day),
            terms=terms,
            price=terms.price_for(self.state.pricing_zone),
        )

    def mark_past_due(self, cause: Cause, reason: str | None = None) -> None:
        self._require(Status.ACTIVE, action="mark past due")
        self._trigger(MarkedPastDue, cause, reason=reason)

    def recover_payment(self, cause: Cause) -> None:
        self._require(Status.PAST_DUE, action="recover payment")
        self._trigger(PaymentRecovered, cause)

    def expire(self, cause: Cause) -> None:
        self._require(*LIVE, Status.PAUSED, action="expire")
        self._trigger(
            SubscriptionExpired, cause, previous_status=self.status, price=self.state.price
        )

    def is_live(self) -> bool:
        return self.status not in TERMINAL

    def _require(self, *allowed: Status, action: str) -> None:
        if self.status not in allowed:
            names = ", ".join(sorted(s.value for s in allowed))
            raise InvalidTransition(
                f"cannot {action} a {self.status.value} subscription (allowed from: {names})",
                field="status",
                status=self.status.value,
            )


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
