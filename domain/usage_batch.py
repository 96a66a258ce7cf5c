"""Deciding a batch of usage for one quota: what is counted, what a hard limit refuses.

A `UsageTally` runs over the facts of one ingest batch that feed one quota, in order, on a
running copy of the window's figures (used, overage, distinct values, latest time), so each
fact is decided as if the ones before it were already counted; `Quota.record_usage` then
records the whole batch as ONE `UsageRecorded` event (plus at most one SoftLimitReached),
and each refusal by the hard limit as a QuotaExceeded.

Which facts count in the window: a fact whose time is before the current window's start is
late: it is recorded (billing and the usage read model place it by its time) but does not
change the current window's `used`, and no limit applies to a window that has ended. A fact
timed at or after the window's end (clock skew, up to the accepted future tolerance) counts
in the current window. Idempotency is not decided here: the ingest drops keys the database
already counted before a fact reaches the tally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import Field

from domain.catalog import Enforcement, Meter
from domain.metering import is_newest, remembers_values, step
from domain.value import FrozenValue

if TYPE_CHECKING:
    from domain.quota import Quota

MAX_DISTINCT_VALUES = 10_000
"""Most distinct values a unique_count quota remembers per window (bounds its snapshot)."""

HARD_LIMIT_EXCEEDED = "hard_limit_exceeded"
DISTINCT_VALUES_EXCEEDED = "distinct_values_exceeded"


class UsageFact(FrozenValue):
    """One usage event's value for one quota, at the time the usage happened."""

    key: str = Field(description="the usage event's idempotency key")
    value: int = Field(ge=0, description="the meter's value (unique_count: the distinct value)")
    at: datetime
    group: dict[str, str | int | bool] | None = None


@dataclass
class UsageTally:
    """The running figures of one quota's window while a batch is decided."""

    quota: Quota
    now: datetime
    granted: bool = False
    used: int = 0
    overage: int = 0
    latest_at: datetime | None = None
    distinct: set[int] = field(default_factory=set)
    counted: list[UsageFact] = field(default_factory=list)
    late: list[UsageFact] = field(default_factory=list)
    refusals: list[tuple[UsageFact, int]] = field(default_factory=list)  # fact, used then
    effective: int | None = None  # the effective limit at `now` (grants included)

    @classmethod
    def open(cls, quota: Quota, now: datetime, granted: bool = False) -> UsageTally:
        state = quota.state
        return cls(
            quota=quota,
            now=now,
            granted=granted,
            used=state.used,
            overage=state.overage,
            latest_at=state.latest_at,
            distinct=set(state.distinct_values),
            effective=quota.effective_limit(now),
        )

    @property
    def meter(self) -> Meter:
        return self.quota.state.meter

    def is_late(self, fact: UsageFact) -> bool:
        window = self.quota.state.window
        return window is not None and fact.at < window.start

    def refusal(self, fact: UsageFact) -> str | None:
        """Why this fact would be refused now (None: it would be counted); changes nothing."""
        state = self.quota.state
        if not state.enabled and not self.granted:
            return state.disabled_reason or "feature_not_in_plan"
        if self.is_late(fact):
            return None
        effective = self.effective
        hard = state.enforcement is Enforcement.HARD
        if effective is not None and hard and self._after(fact) > effective:
            return HARD_LIMIT_EXCEEDED
        if self._too_many_distinct(fact):
            return DISTINCT_VALUES_EXCEEDED
        return None

    def add(self, fact: UsageFact) -> None:
        """Count the fact (the caller checked `refusal` first)."""
        if self.is_late(fact):
            self.late.append(fact)
            return
        effective = self.effective
        after = self._after(fact)
        added = _over(after, effective) - _over(self.used, effective)
        self.overage = max(0, self.overage + added)
        self.used = after
        if remembers_values(self.meter):
            self.distinct.add(fact.value)
        if is_newest(fact.at, self.latest_at):
            self.latest_at = fact.at
        self.counted.append(fact)

    def refuse(self, fact: UsageFact) -> None:
        """Note a hard-limit refusal (recorded as QuotaExceeded when the batch is recorded)."""
        self.refusals.append((fact, self.used))

    @property
    def changed(self) -> bool:
        return bool(self.counted or self.late or self.refusals)

    def _after(self, fact: UsageFact) -> int:
        return step(
            self.meter,
            self.used,
            fact.value,
            known=fact.value in self.distinct,
            newest=is_newest(fact.at, self.latest_at),
        )

    def _too_many_distinct(self, fact: UsageFact) -> bool:
        return (
            remembers_values(self.meter)
            and fact.value not in self.distinct
            and len(self.distinct) >= MAX_DISTINCT_VALUES
        )


def _over(used: int, effective: int | None) -> int:
    """The part of `used` beyond the effective limit (0 when unlimited)."""
    return 0 if effective is None else max(0, used - effective)
