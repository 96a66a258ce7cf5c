"""Quota aggregate: one tenant's usage of one metered feature in the current window.

One Quota per (app, tenant, metered feature). Its state is the CURRENT window only: a reset
opens the next window and forgets the previous one's usage and idempotency keys (the events
keep the history). Windows are counted from `anchor` (the subscription's period start) in
days or calendar months; an ABSOLUTE quota has no window and never resets.

`used` follows the quota's meter (domain/metering.py) over the consumes counted in the
window: sum adds the amounts, count counts the consumes, max keeps the largest amount,
latest the amount of the latest consume, unique_count the number of distinct amounts (the
distinct amounts seen are kept in the state, reset with the window, at most
MAX_DISTINCT_VALUES of them). A meter change carries `used` over like any reconfigure; the
new meter applies from the next consume.

The effective limit is the plan limit plus every grant that has not expired by the cause's
clock time. A live manual feature grant with a `limit` (domain/entitlement_grant.py) replaces
the plan limit, the allowance grants still adding to it, as in the entitlement check: the
caller passes that `grant_limit` to the consume, the batch tally and the figures.
Hard quotas refuse a consume that would push `used` past the effective limit;
soft quotas allow it and count the part beyond the limit as overage.

Every event names the feature and carries the counters a read model needs (used, limit,
remaining, window), so projectors never load the aggregate.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.catalog import (
    Enforcement,
    FeatureKind,
    FeatureSpec,
    Meter,
    QuotaPeriod,
    soft_threshold_units,
)
from domain.errors import AlreadyExists, InvalidTransition, InvalidValue, NotFound
from domain.metering import is_newest, remembers_values
from domain.period import Interval, Period, window_containing
from domain.usage_batch import (
    DISTINCT_VALUES_EXCEEDED as DISTINCT_VALUES_EXCEEDED,
)
from domain.usage_batch import (
    HARD_LIMIT_EXCEEDED,
    UsageFact,
    UsageTally,
)
from domain.usage_batch import (
    MAX_DISTINCT_VALUES as MAX_DISTINCT_VALUES,
)

MAX_AMOUNT = 10**15
"""Largest single consume or grant; keeps every counter inside a 64-bit JSON integer."""

FEATURE_NOT_IN_PLAN = "feature_not_in_plan"


@lru_cache(maxsize=65_536)
def quota_id(app_id: str, tenant_id: str, feature_key: str) -> UUID:
    return stable_id("quota", app_id, tenant_id, feature_key)


class Grant(BaseModel):
    """Extra allowance a support agent gave, counted until it expires (None = this window)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: int
    reason: str
    actor: str
    granted_at: datetime
    expires_at: datetime | None = None

    def active_at(self, instant: datetime) -> bool:
        return self.expires_at is None or self.expires_at > instant


class ConsumeOutcome(BaseModel):
    """The answer to one consume.

    `limit` is the effective limit (None = unlimited); `remaining` never goes below 0;
    `soft_limit` is the soft warning threshold in units (None unless the quota is soft and
    limited) and `soft_limit_reached` tells whether that warning has been recorded this window.
    `reason` explains a refusal: "hard_limit_exceeded", "feature_not_in_plan" or
    "distinct_values_exceeded" (a unique_count window already holds MAX_DISTINCT_VALUES).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed: bool
    duplicate: bool = False
    used: int
    limit: int | None
    remaining: int | None
    overage: int
    soft_limit: int | None = None
    soft_limit_reached: bool = False
    reason: str | None = None


class QuotaState(AggregateState):
    tenant_id: str
    feature_key: str
    subscription_id: UUID | None = None
    limit: int | None
    enforcement: Enforcement
    soft_threshold_percent: int
    period: QuotaPeriod
    meter: Meter = Meter.SUM
    meter_key: str | None = None  # the catalog meter that feeds it (typed usage events)
    anchor: datetime
    window: Period | None
    used: int = 0
    overage: int = 0
    grants: dict[str, Grant] = Field(default_factory=dict)
    seen_keys: set[str] = Field(default_factory=set)  # unused: keys are in the database now
    distinct_values: set[int] = Field(default_factory=set)  # unique_count only, this window
    latest_at: datetime | None = None  # clock time of the latest consume counted this window
    soft_warned: bool = False
    enabled: bool = True
    disabled_reason: str | None = None


class QuotaEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "quota"
    feature_key: str


class QuotaConfigured(QuotaEvent, CreatedEvent):
    NAME: ClassVar[str] = "QuotaConfigured"
    subscription_id: UUID | None = None
    limit: int | None
    enforcement: Enforcement
    soft_threshold_percent: int
    period: QuotaPeriod
    meter: Meter = Meter.SUM
    meter_key: str | None = None
    anchor: datetime
    window: Period | None

    def apply(self, aggregate: Any) -> None:
        aggregate.state = QuotaState(
            app_id=self.app_id,
            tenant_id=self.tenant_id or "",
            feature_key=self.feature_key,
            subscription_id=self.subscription_id,
            limit=self.limit,
            enforcement=self.enforcement,
            soft_threshold_percent=self.soft_threshold_percent,
            period=self.period,
            meter=self.meter,
            meter_key=self.meter_key,
            anchor=self.anchor,
            window=self.window,
        )


class QuotaReconfigured(QuotaEvent):
    """The plan changed: new terms for the quota; usage in the window carries over."""

    NAME: ClassVar[str] = "QuotaReconfigured"
    subscription_id: UUID | None = None
    limit: int | None
    effective_limit: int | None
    enforcement: Enforcement
    soft_threshold_percent: int
    period: QuotaPeriod
    meter: Meter = Meter.SUM
    meter_key: str | None = None
    window: Period | None
    used: int
    remaining: int | None
    soft_warned: bool

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        if self.meter is not state.meter:
            state.distinct_values = set()  # kept only while the meter is unique_count
        state.subscription_id = self.subscription_id
        state.limit = self.limit
        state.enforcement = self.enforcement
        state.soft_threshold_percent = self.soft_threshold_percent
        state.period = self.period
        state.meter = self.meter
        state.meter_key = self.meter_key
        state.window = self.window
        state.soft_warned = self.soft_warned
        state.enabled = True
        state.disabled_reason = None


class QuotaDisabled(QuotaEvent):
    """The feature left the tenant's plan: consumes are refused until it comes back."""

    NAME: ClassVar[str] = "QuotaDisabled"
    used: int
    window: Period | None
    reason: str = "feature_not_in_plan"

    def apply(self, aggregate: Any) -> None:
        aggregate.state.enabled = False
        aggregate.state.disabled_reason = self.reason


class QuotaConsumed(QuotaEvent):
    """Usage was counted. `amount` is the event's value, `meter` how `used` folded it in
    (events stored before meters were honoured have none: they summed); `limit` is the
    effective limit; `overage` the window's total."""

    NAME: ClassVar[str] = "QuotaConsumed"
    amount: int
    idempotency_key: str
    meter: Meter = Meter.SUM
    used: int
    limit: int | None
    remaining: int | None
    overage: int
    overage_added: int = 0
    window: Period | None

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.used = self.used
        state.overage = self.overage
        if remembers_values(self.meter):
            state.distinct_values.add(self.amount)
        if is_newest(self.timestamp, state.latest_at):
            state.latest_at = self.timestamp


class UsageRecorded(QuotaEvent):
    """A batch of usage was counted: `facts` in the current window (`used` after them),
    `late_facts` timed in an earlier window (recorded for billing, not in `used`)."""

    NAME: ClassVar[str] = "UsageRecorded"
    facts: list[UsageFact]
    late_facts: list[UsageFact] = Field(default_factory=list)
    meter: Meter
    used: int
    limit: int | None
    remaining: int | None
    overage: int
    overage_added: int = 0
    latest_at: datetime | None = None
    window: Period | None

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.used = self.used
        state.overage = self.overage
        state.latest_at = self.latest_at
        if remembers_values(self.meter):
            state.distinct_values |= {fact.value for fact in self.facts}


class QuotaExceeded(QuotaEvent):
    """A consume was refused by the hard limit; nothing was counted."""

    NAME: ClassVar[str] = "QuotaExceeded"
    amount: int
    idempotency_key: str
    used: int
    limit: int
    remaining: int
    window: Period | None


class SoftLimitReached(QuotaEvent):
    """Usage crossed the soft warning threshold (recorded once per window)."""

    NAME: ClassVar[str] = "SoftLimitReached"
    threshold: int = Field(description="percent of the effective limit")
    threshold_units: int
    used: int
    limit: int
    window: Period | None

    def apply(self, aggregate: Any) -> None:
        aggregate.state.soft_warned = True


class AllowanceGranted(QuotaEvent):
    NAME: ClassVar[str] = "AllowanceGranted"
    grant_id: str
    amount: int
    reason: str
    expires_at: datetime | None = None
    effective_limit: int | None
    used: int
    remaining: int | None

    def apply(self, aggregate: Any) -> None:
        aggregate.state.grants[self.grant_id] = Grant(
            amount=self.amount,
            reason=self.reason,
            actor=self.actor,
            granted_at=self.timestamp,
            expires_at=self.expires_at,
        )


class GrantRevoked(QuotaEvent):
    NAME: ClassVar[str] = "GrantRevoked"
    grant_id: str
    amount: int
    reason: str
    effective_limit: int | None
    used: int
    remaining: int | None

    def apply(self, aggregate: Any) -> None:
        aggregate.state.grants.pop(self.grant_id, None)


class QuotaReset(QuotaEvent):
    """A new window opened: usage, overage, idempotency keys and the warning start over."""

    NAME: ClassVar[str] = "QuotaReset"
    previous_window: Period | None
    previous_used: int
    previous_overage: int
    window: Period
    expired_grants: list[str] = Field(default_factory=list)
    limit: int | None
    effective_limit: int | None

    def apply(self, aggregate: Any) -> None:
        state = aggregate.state
        state.window = self.window
        state.used = 0
        state.overage = 0
        state.distinct_values = set()
        state.latest_at = None
        state.soft_warned = False
        for grant_id in self.expired_grants:
            state.grants.pop(grant_id, None)


class Quota(Aggregate[QuotaState]):
    """How much of one metered feature a tenant has used in the current window."""

    TYPE: ClassVar[str] = "quota"
    State = QuotaState

    @classmethod
    def configure(
        cls,
        app_id: str,
        tenant_id: str,
        spec: FeatureSpec,
        subscription_id: UUID | None,
        anchor: datetime,
        cause: Cause,
    ) -> Quota:
        """Start counting a metered feature, windows counted from `anchor`."""
        _require_metered(spec)
        if anchor.tzinfo is None:
            raise InvalidValue("the anchor must carry a timezone", field="anchor")
        return cls._create(
            QuotaConfigured,
            quota_id(app_id, tenant_id, spec.key),
            cause,
            app_id=app_id,
            tenant_id=tenant_id,
            feature_key=spec.key,
            subscription_id=subscription_id,
            limit=spec.limit,
            enforcement=spec.enforcement,
            soft_threshold_percent=spec.soft_threshold_percent,
            period=spec.period,
            meter=spec.meter,
            meter_key=spec.meter_key,
            anchor=anchor,
            window=_window(spec.period, anchor, max(anchor, cause.occurred_at)),
        )

    def reconfigure(self, spec: FeatureSpec, subscription_id: UUID | None, cause: Cause) -> bool:
        """Apply new plan terms (and re-enable a disabled quota); False when nothing changed.

        Usage in the current window carries over. If the period kind changes, the window
        becomes the new kind's window around now (from the same anchor); a raised or lowered
        limit re-arms the soft warning when usage is now below the new threshold.
        """
        _require_metered(spec)
        state = self.state
        if spec.key != state.feature_key:
            raise InvalidValue(
                f"this quota counts {state.feature_key}, not {spec.key}", field="feature_key"
            )
        new = (
            spec.limit,
            spec.enforcement,
            spec.soft_threshold_percent,
            spec.period,
            spec.meter,
            spec.meter_key,
            subscription_id,
        )
        old = (
            state.limit,
            state.enforcement,
            state.soft_threshold_percent,
            state.period,
            state.meter,
            state.meter_key,
            state.subscription_id,
        )
        if new == old and state.enabled:
            return False
        now = cause.occurred_at
        window = state.window
        if spec.period is not state.period:
            window = _window(spec.period, state.anchor, max(state.anchor, now))
        effective = _effective(spec.limit, state.grants, now)
        threshold = _threshold_units(effective, spec.enforcement, spec.soft_threshold_percent)
        self._trigger(
            QuotaReconfigured,
            cause,
            feature_key=state.feature_key,
            subscription_id=subscription_id,
            limit=spec.limit,
            effective_limit=effective,
            enforcement=spec.enforcement,
            soft_threshold_percent=spec.soft_threshold_percent,
            period=spec.period,
            meter=spec.meter,
            meter_key=spec.meter_key,
            window=window,
            used=state.used,
            remaining=_remaining(effective, state.used),
            soft_warned=state.soft_warned and threshold is not None and state.used >= threshold,
        )
        return True

    def disable(self, cause: Cause, reason: str = FEATURE_NOT_IN_PLAN) -> None:
        """The feature left the plan, or the subscription stopped (paused, canceled,
        expired): refuse consumes from now on, saying why (grants and usage stay)."""
        if not self.state.enabled:
            raise InvalidTransition(
                f"quota {self.state.feature_key} is already disabled", field="feature_key"
            )
        self._trigger(
            QuotaDisabled,
            cause,
            feature_key=self.state.feature_key,
            used=self.state.used,
            window=self.state.window,
            reason=reason,
        )

    def consume(
        self,
        amount: int,
        idempotency_key: str,
        cause: Cause,
        *,
        granted: bool = False,
        refused_before: bool = False,
        grant_limit: int | None = None,
    ) -> ConsumeOutcome:
        """Count one usage event of value `amount` at the cause's time (`used` follows the
        meter), or refuse: a batch of one (see `record_usage` for the rules). Whether the key
        was already counted is the caller's question (the ingest asks the database), and
        whether it was refused before (then no second QuotaExceeded)."""
        _check_amount(amount, "amount")
        if not isinstance(idempotency_key, str) or not idempotency_key.strip():
            raise InvalidValue("an idempotency key is required", field="idempotency_key")
        tally = UsageTally.open(self, cause.occurred_at, granted, grant_limit)
        fact = UsageFact(key=idempotency_key, value=amount, at=cause.occurred_at)
        reason = tally.refusal(fact)
        if reason is None:
            tally.add(fact)
        elif reason == HARD_LIMIT_EXCEEDED:
            tally.refuse(fact)
        self.record_usage(tally, cause, frozenset({idempotency_key} if refused_before else ()))
        return self.outcome(
            cause.occurred_at, allowed=reason is None, reason=reason, grant_limit=grant_limit
        )

    def refusal(
        self, amount: int, at: datetime, granted: bool = False, grant_limit: int | None = None
    ) -> str | None:
        """Why a usage of value `amount` at `at` would be refused now (None: it would count);
        records nothing."""
        fact = UsageFact.model_construct(key="", value=amount, at=at)
        return UsageTally.open(self, at, granted, grant_limit).refusal(fact)

    def record_usage(
        self, tally: UsageTally, cause: Cause, refused_before: frozenset[str] = frozenset()
    ) -> None:
        """Record what a batch decided: one QuotaExceeded per hard-limit refusal (none for a
        key refused before: `refused_before`), one UsageRecorded for the counted and late
        facts, and SoftLimitReached the first time in a window `used` reaches the soft
        threshold.

        - A disabled quota (feature not in the plan, subscription stopped) refuses with that
          reason and records NO event, unless the tally is `granted` (a live manual feature
          grant, a support override), which counts as if enabled.
        - Hard: a fact whose resulting `used` would be past the effective limit is refused,
          counts nothing (a retry may succeed after a grant or reset).
        - Soft: always counted; the part of `used` beyond the effective limit adds to
          `overage` (and leaves it when a latest meter falls back).
        - unique_count: a new distinct value once the window holds MAX_DISTINCT_VALUES is
          refused with reason "distinct_values_exceeded", recording nothing.
        """
        state = self.state
        effective = tally.effective
        for fact, used in tally.refusals:
            if fact.key in refused_before or effective is None:
                continue
            self._trigger(
                QuotaExceeded,
                cause,
                feature_key=state.feature_key,
                amount=fact.value,
                idempotency_key=fact.key,
                used=used,
                limit=effective,
                remaining=_remaining(effective, used),
                window=state.window,
            )
        if not (tally.counted or tally.late):
            return
        self._trigger(
            UsageRecorded,
            cause,
            feature_key=state.feature_key,
            facts=tally.counted,
            late_facts=tally.late,
            meter=state.meter,
            used=tally.used,
            limit=effective,
            remaining=_remaining(effective, tally.used),
            overage=tally.overage,
            overage_added=max(0, tally.overage - state.overage),
            latest_at=tally.latest_at,
            window=state.window,
        )
        self._warn_if_soft_limit_reached(cause, effective)

    def _warn_if_soft_limit_reached(self, cause: Cause, effective: int | None) -> None:
        state = self.state
        threshold = _threshold_units(effective, state.enforcement, state.soft_threshold_percent)
        if effective is None or threshold is None or state.soft_warned or state.used < threshold:
            return
        self._trigger(
            SoftLimitReached,
            cause,
            feature_key=state.feature_key,
            threshold=state.soft_threshold_percent,
            threshold_units=threshold,
            used=state.used,
            limit=effective,
            window=state.window,
        )

    def grant(
        self,
        grant_id: str,
        amount: int,
        reason: str,
        expires_at: datetime | None,
        cause: Cause,
    ) -> None:
        """Raise the effective limit by `amount` until `expires_at` (or until a reset drops
        it once expired; a grant without expiry lasts until revoked)."""
        _check_amount(amount, "amount")
        if not isinstance(grant_id, str) or not grant_id.strip():
            raise InvalidValue("a grant needs an id", field="grant_id")
        if grant_id in self.state.grants:
            raise AlreadyExists(f"grant {grant_id} already exists", field="grant_id")
        reason = _require_reason(reason)
        now = cause.occurred_at
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InvalidValue("expires_at must carry a timezone", field="expires_at")
            if expires_at <= now:
                raise InvalidValue("expires_at must be in the future", field="expires_at")
        effective = _effective(self.state.limit, self.state.grants, now)
        if effective is not None:
            effective += amount
        self._trigger(
            AllowanceGranted,
            cause,
            feature_key=self.state.feature_key,
            grant_id=grant_id,
            amount=amount,
            reason=reason,
            expires_at=expires_at,
            effective_limit=effective,
            used=self.state.used,
            remaining=_remaining(effective, self.state.used),
        )

    def revoke(self, grant_id: str, reason: str, cause: Cause) -> None:
        """Take a grant back; usage already counted stays counted."""
        grant = self.state.grants.get(grant_id)
        if grant is None:
            raise NotFound(f"grant {grant_id} not found", field="grant_id")
        reason = _require_reason(reason)
        remaining_grants = {k: g for k, g in self.state.grants.items() if k != grant_id}
        effective = _effective(self.state.limit, remaining_grants, cause.occurred_at)
        self._trigger(
            GrantRevoked,
            cause,
            feature_key=self.state.feature_key,
            grant_id=grant_id,
            amount=grant.amount,
            reason=reason,
            effective_limit=effective,
            used=self.state.used,
            remaining=_remaining(effective, self.state.used),
        )

    def reset(self, cause: Cause) -> None:
        """Open the window containing the cause's time: usage, overage, idempotency keys and
        the soft warning start over, and expired grants are dropped. Absolute quotas never
        reset (InvalidTransition)."""
        state = self.state
        if state.period is QuotaPeriod.ABSOLUTE:
            raise InvalidTransition(
                f"quota {state.feature_key} is absolute and never resets", field="feature_key"
            )
        now = cause.occurred_at
        window = _window(state.period, state.anchor, now)
        assert window is not None
        expired = sorted(k for k, g in state.grants.items() if not g.active_at(now))
        self._trigger(
            QuotaReset,
            cause,
            feature_key=state.feature_key,
            previous_window=state.window,
            previous_used=state.used,
            previous_overage=state.overage,
            window=window,
            expired_grants=expired,
            limit=state.limit,
            effective_limit=self.effective_limit(now),
        )

    # --- queries ---

    def window_ended(self, now: datetime) -> bool:
        """True once the clock reaches the end of the current window (never for absolute)."""
        return self.state.window is not None and now >= self.state.window.end

    def effective_limit(self, now: datetime, grant_limit: int | None = None) -> int | None:
        """The plan limit (or a live feature grant's `grant_limit`, which replaces it) plus
        the allowance grants still active at `now`; None = unlimited."""
        base = self.state.limit if grant_limit is None else grant_limit
        return _effective(base, self.state.grants, now)

    def remaining(self, now: datetime, grant_limit: int | None = None) -> int | None:
        return _remaining(self.effective_limit(now, grant_limit), self.state.used)

    def soft_limit(self, now: datetime, grant_limit: int | None = None) -> int | None:
        """The soft warning threshold in units (soft, limited quotas only)."""
        state = self.state
        return _threshold_units(
            self.effective_limit(now, grant_limit), state.enforcement, state.soft_threshold_percent
        )

    def outcome(
        self,
        now: datetime,
        *,
        allowed: bool,
        duplicate: bool = False,
        reason: str | None = None,
        grant_limit: int | None = None,
    ) -> ConsumeOutcome:
        state = self.state
        return ConsumeOutcome(
            allowed=allowed,
            duplicate=duplicate,
            used=state.used,
            limit=self.effective_limit(now, grant_limit),
            remaining=self.remaining(now, grant_limit),
            overage=state.overage,
            soft_limit=self.soft_limit(now, grant_limit),
            soft_limit_reached=state.soft_warned,
            reason=reason,
        )


def _require_metered(spec: FeatureSpec) -> None:
    if spec.kind is not FeatureKind.METERED:
        raise InvalidValue(
            f"feature {spec.key} is {spec.kind.value}; only metered features have quotas",
            field=f"features.{spec.key}.kind",
        )


def _check_amount(amount: Any, field: str) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidValue(f"{field} must be a positive whole number", field=field)
    if amount > MAX_AMOUNT:
        raise InvalidValue(f"{field} must be at most {MAX_AMOUNT}", field=field)


def _require_reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidValue("a reason is required", field="reason")
    return reason.strip()


def _window(period: QuotaPeriod, anchor: datetime, instant: datetime) -> Period | None:
    if period is QuotaPeriod.ABSOLUTE:
        return None
    return window_containing(anchor, Interval(period.value), instant)


def _effective(limit: int | None, grants: dict[str, Grant], now: datetime) -> int | None:
    if limit is None:
        return None
    return limit + sum(g.amount for g in grants.values() if g.active_at(now))


def _remaining(effective: int | None, used: int) -> int | None:
    return None if effective is None else max(effective - used, 0)


def _threshold_units(effective: int | None, enforcement: Enforcement, percent: int) -> int | None:
    return soft_threshold_units(effective, enforcement, percent)
