"""Alert aggregate: thresholds on a tenant's usage, spend or credit balance that fire once
per period as AlertTriggered events.

One Alert per (app, alert key). It watches one tenant, or every tenant of the app (no
tenant_id), and holds up to MAX_THRESHOLDS distinct thresholds of its kind:
- usage (of one metered feature): `{"percent": 80}` of the quota's effective limit, or
  `{"units": 1000}`; crossed when `used` reaches it (a percent never fires while unlimited);
- spend: `{"amount": Money}`; crossed when the tenant's accrued amount reaches it;
- credit_balance: `{"amount": Money}`; crossed when the credit balance falls to or below it
  (observed per threshold: each re-arms when the balance rises above it).

The alert does not read usage itself: an evaluator following the event log hands it
`Observation`s (what a tenant's counter showed in which period, and the event that showed
it), and the aggregate decides what fires. Each threshold fires at most once per (subject,
period): the state remembers, per subject, the latest period it fired in and what fired
there. Periods of a subject are ordered by their `rank` (log positions or period starts, as
the evaluator documents), so an observation of an older period (a redelivery or a replay of
the evaluator) fires nothing and the state stays bounded. A deleted alert never fires.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from pydantic import (
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    StrictInt,
    field_validator,
    model_serializer,
    model_validator,
)

from domain.base import Aggregate, AggregateState, Cause, CreatedEvent, DomainEvent, stable_id
from domain.catalog import validate_key
from domain.errors import InvalidTransition, InvalidValue
from domain.money import Money
from domain.value import FrozenValue

MAX_THRESHOLDS = 10
MAX_PERCENT = 1000
"""A percent threshold may sit past the limit (soft quotas count overage), up to 10 times it."""
MAX_UNITS = 10**15
"""The largest units threshold (as the largest quota counter)."""


def alert_id(app_id: str, alert_key: str) -> UUID:
    return stable_id("alert", app_id, alert_key)


class AlertKind(StrEnum):
    USAGE = "usage"
    SPEND = "spend"
    CREDIT_BALANCE = "credit_balance"


class Threshold(FrozenValue):
    """One threshold: exactly one of percent, units (usage) or amount (spend, credit)."""

    percent: StrictInt | None = Field(
        default=None, gt=0, le=MAX_PERCENT, description="of the effective limit, 1-1000"
    )
    units: StrictInt | None = Field(
        default=None, gt=0, le=MAX_UNITS, description="usage units, at least 1"
    )
    amount: Money | None = Field(default=None, description="minor units and currency, above 0")

    @field_validator("amount")
    @classmethod
    def _positive(cls, amount: Money | None) -> Money | None:
        if amount is not None and amount.amount <= 0:
            raise InvalidValue("amount must be above zero", field="amount")
        return amount

    @model_validator(mode="after")
    def _exactly_one(self) -> Threshold:
        given = [name for name in ("percent", "units", "amount") if getattr(self, name) is not None]
        if len(given) != 1:
            raise InvalidValue("give exactly one of percent, units and amount")
        return self

    @model_serializer(mode="wrap")
    def _only_given(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        """`{"percent": 80}`, not `{"percent": 80, "units": null, "amount": null}`."""
        dumped: dict[str, Any] = handler(self)
        return {k: v for k, v in dumped.items() if v is not None}

    @property
    def key(self) -> str:
        """Its identity inside an alert: "percent:80", "units:1000", "amount:USD:5000"."""
        if self.percent is not None:
            return f"percent:{self.percent}"
        if self.units is not None:
            return f"units:{self.units}"
        assert self.amount is not None
        return f"amount:{self.amount.currency}:{self.amount.amount}"

    def crossed(
        self, kind: AlertKind, value: int, *, limit: int | None = None, currency: str | None = None
    ) -> bool:
        """Whether a value is at (or past) this threshold: usage units against units or a
        percent of `limit` (never while unlimited); minor units of `currency` against an
        amount (spend reaches it, a credit balance falls to or below it)."""
        if kind is AlertKind.USAGE:
            if value <= 0:
                return False
            if self.units is not None:
                return value >= self.units
            return (
                self.percent is not None
                and limit is not None
                and value * 100 >= (self.percent * limit)
            )
        if self.amount is None or currency != self.amount.currency:
            return False
        if kind is AlertKind.SPEND:
            return value >= self.amount.amount
        return value <= self.amount.amount


def check_terms(kind: AlertKind, feature_key: str | None, thresholds: list[Threshold]) -> None:
    """The rules of an alert's terms; InvalidValue naming the field otherwise."""
    if kind is AlertKind.USAGE:
        if feature_key is None:
            raise InvalidValue("a usage alert names its feature_key", field="feature_key")
        validate_key(feature_key, "feature_key")
    elif feature_key is not None:
        raise InvalidValue(f"a {kind.value} alert has no feature_key", field="feature_key")
    if not thresholds:
        raise InvalidValue("give at least one threshold", field="thresholds")
    if len(thresholds) > MAX_THRESHOLDS:
        raise InvalidValue(f"give at most {MAX_THRESHOLDS} thresholds", field="thresholds")
    seen: set[str] = set()
    currencies: set[str] = set()
    for index, threshold in enumerate(thresholds):
        _check_form(kind, threshold, index)
        if threshold.key in seen:
            raise InvalidValue("thresholds must be distinct", field=f"thresholds.{index}")
        seen.add(threshold.key)
        if threshold.amount is not None:
            currencies.add(threshold.amount.currency)
            if len(currencies) > 1:
                raise InvalidValue(
                    "every threshold of an alert is in one currency",
                    field=f"thresholds.{index}.amount.currency",
                )


def _check_form(kind: AlertKind, threshold: Threshold, index: int) -> None:
    if kind is AlertKind.USAGE and threshold.amount is not None:
        raise InvalidValue(
            "a usage threshold is a percent or units", field=f"thresholds.{index}.amount"
        )
    if kind is not AlertKind.USAGE and threshold.amount is None:
        raise InvalidValue(
            f"a {kind.value} threshold is an amount", field=f"thresholds.{index}.amount"
        )


class Observation(FrozenValue):
    """What one tenant's watched value showed in one period, and the event that showed it.

    `subject` is whose value it is (the tenant, with the currency for a credit balance);
    `period_key` names the period, `rank` orders a subject's periods (higher is later).
    `value` is usage units or minor units of `currency`; `limit` the quota's effective limit;
    `threshold_key`, when given, scopes it to that one threshold (a credit balance re-arms
    each threshold when the balance rises above it, so each has periods of its own).
    """

    tenant_id: str
    subject: str
    period_key: str
    rank: int
    period_start: datetime | None = None
    period_end: datetime | None = None
    value: int
    currency: str | None = None
    limit: int | None = None
    source_position: int = Field(ge=0)
    source_event_id: UUID
    observed_at: datetime
    threshold_key: str | None = Field(
        default=None, description="only this threshold (each re-arms on its own)"
    )


class FiredPeriod(FrozenValue):
    """The latest period a subject fired in, and the thresholds (keys) fired there."""

    period_key: str
    rank: int
    thresholds: tuple[str, ...] = ()


class AlertState(AggregateState):
    alert_key: str
    kind: AlertKind
    feature_key: str | None = None
    thresholds: list[Threshold]
    deleted: bool = False
    fired: dict[str, FiredPeriod] = Field(default_factory=dict)  # subject -> latest period


class AlertEvent(DomainEvent):
    AGGREGATE_TYPE: ClassVar[str] = "alert"
    alert_key: str


class AlertCreated(AlertEvent, CreatedEvent):
    """tenant_id (the envelope field) is the watched tenant; None watches every tenant."""

    NAME: ClassVar[str] = "AlertCreated"
    kind: AlertKind
    feature_key: str | None = None
    thresholds: list[Threshold]

    def apply(self, aggregate: Any) -> None:
        aggregate.state = AlertState(
            app_id=self.app_id,
            tenant_id=self.tenant_id,
            alert_key=self.alert_key,
            kind=self.kind,
            feature_key=self.feature_key,
            thresholds=list(self.thresholds),
        )


class AlertDeleted(AlertEvent):
    NAME: ClassVar[str] = "AlertDeleted"

    def apply(self, aggregate: Any) -> None:
        aggregate.state.deleted = True


class AlertTriggered(AlertEvent):
    """A threshold was reached (once per subject and period). tenant_id is the tenant whose
    value crossed it; `value` is usage units or minor units of `currency`; `limit` the
    effective limit a percent was taken of; `source_position` / `source_event_id` the event
    that showed the value."""

    NAME: ClassVar[str] = "AlertTriggered"
    alert_id: UUID
    kind: AlertKind
    feature_key: str | None = None
    threshold: Threshold
    value: int
    currency: str | None = None
    limit: int | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    period_key: str
    subject: str
    rank: int
    source_position: int
    source_event_id: UUID
    observed_at: datetime

    def apply(self, aggregate: Any) -> None:
        fired: dict[str, FiredPeriod] = aggregate.state.fired
        current = fired.get(self.subject)
        if current is None or current.period_key != self.period_key:
            current = FiredPeriod(period_key=self.period_key, rank=self.rank)
        fired[self.subject] = current.model_copy(
            update={"thresholds": (*current.thresholds, self.threshold.key)}
        )


class Alert(Aggregate[AlertState]):
    """Thresholds on usage, spend or a credit balance; each fires once per subject and period."""

    TYPE: ClassVar[str] = "alert"
    State = AlertState

    @classmethod
    def create(
        cls,
        app_id: str,
        alert_key: str,
        cause: Cause,
        *,
        kind: AlertKind,
        thresholds: list[Threshold],
        tenant_id: str | None = None,
        feature_key: str | None = None,
    ) -> Alert:
        validate_key(alert_key, "alert_key")
        kind = AlertKind(kind)
        check_terms(kind, feature_key, thresholds)
        return cls._create(
            AlertCreated,
            alert_id(app_id, alert_key),
            cause,
            app_id=app_id,
            tenant_id=tenant_id,
            alert_key=alert_key,
            kind=kind,
            feature_key=feature_key,
            thresholds=list(thresholds),
        )

    @property
    def deleted(self) -> bool:
        return self.state.deleted

    def delete(self, cause: Cause) -> None:
        """Stop watching for good: a deleted alert never fires again."""
        if self.state.deleted:
            raise InvalidTransition(
                f"alert {self.state.alert_key} is already deleted", field="alert_id"
            )
        self._trigger(AlertDeleted, cause, alert_key=self.state.alert_key)

    def watches(self, tenant_id: str) -> bool:
        """Whether this alert is about the tenant (its own, or every tenant of the app)."""
        return self.state.tenant_id is None or self.state.tenant_id == tenant_id

    def due(self, observation: Observation) -> list[Threshold]:
        """The thresholds the observation crosses that have not fired in its period yet
        (none when deleted, for another tenant, or for a period older than the latest)."""
        state = self.state
        if state.deleted or not self.watches(observation.tenant_id):
            return []
        current = state.fired.get(observation.subject)
        if current is not None and observation.rank < current.rank:
            return []
        same_period = current is not None and current.period_key == observation.period_key
        fired = current.thresholds if current is not None and same_period else ()
        wanted = observation.threshold_key
        return [
            t
            for t in state.thresholds
            if t.key not in fired
            and (wanted is None or t.key == wanted)
            and t.crossed(
                state.kind,
                observation.value,
                limit=observation.limit,
                currency=observation.currency,
            )
        ]

    def observe(self, observation: Observation, cause: Cause) -> list[AlertTriggered]:
        """Fire every threshold the observation crosses for the first time in its period."""
        state = self.state
        return [
            self._trigger(
                AlertTriggered,
                cause,
                tenant_id=observation.tenant_id,
                alert_key=state.alert_key,
                alert_id=self.id,
                kind=state.kind,
                feature_key=state.feature_key,
                threshold=threshold,
                value=observation.value,
                currency=observation.currency,
                limit=observation.limit,
                period_start=observation.period_start,
                period_end=observation.period_end,
                period_key=observation.period_key,
                subject=observation.subject,
                rank=observation.rank,
                source_position=observation.source_position,
                source_event_id=observation.source_event_id,
                observed_at=observation.observed_at,
            )
            for threshold in self.due(observation)
        ]
