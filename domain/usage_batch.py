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

A whole batch at once (`accepts_all`, `add_all`): when the quota counts (enabled, or under a
live feature grant), its meter adds (sum, count) and no hard limit could refuse any of the
facts (no hard limit, or `used` plus all of them stays within it), every fact is counted
whatever the order, so the batch is counted in one step instead of fact by fact: the same
`used`, overage and latest time as the walk would reach (an addition telescopes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import Field

from domain.catalog import Enforcement, Meter
from domain.metering import is_newest, remembers_values, step
from domain.value import FrozenValue

if TYPE_CHECKING:
    from domain.quota import Quota

ADDITIVE = frozenset({Meter.SUM, Meter.COUNT})
"""Meters whose `used` is the facts added up, in any order (decided per batch, not per fact)."""

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

    @classmethod
    def trusted(
        cls, key: str, value: int, at: datetime, group: dict[str, str | int | bool] | None = None
    ) -> UsageFact:
        """A fact from values already checked (the ingest validated the request): built
        without validation, as `model_construct` does, at a fraction of its cost."""
        fact = _new(cls)
        _set(fact, "__dict__", {"key": key, "value": value, "at": at, "group": group})
        _set(fact, "__pydantic_fields_set__", _FACT_FIELDS)
        _set(fact, "__pydantic_extra__", None)
        _set(fact, "__pydantic_private__", None)
        return fact


_FACT_FIELDS = frozenset({"key", "value", "at", "group"})
_new, _set = object.__new__, object.__setattr__


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
    grant_limit: int | None = None  # a live feature grant's limit (replaces the plan's)

    @classmethod
    def open(
        cls, quota: Quota, now: datetime, granted: bool = False, grant_limit: int | None = None
    ) -> UsageTally:
        """The quota's figures now; `granted`: a live feature grant keeps a disabled quota
        counting; `grant_limit`: that grant's limit, which replaces the plan's."""
        state = quota.state
        return cls(
            quota=quota,
            now=now,
            granted=granted,
            used=state.used,
            overage=state.overage,
            latest_at=state.latest_at,
            distinct=set(state.distinct_values),
            effective=quota.effective_limit(now, grant_limit),
            grant_limit=grant_limit,
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

    def accepts_all(self, facts: Sequence[UsageFact]) -> bool:
        """Whether every one of these facts would be counted, in any order (module docstring):
        then `add_all` counts them in one step."""
        state = self.quota.state
        if (not state.enabled and not self.granted) or state.meter not in ADDITIVE:
            return False
        effective = self.effective
        if effective is None or state.enforcement is not Enforcement.HARD:
            return True
        return self.used + self._added(self._current(facts)) <= effective

    def add_all(self, facts: Sequence[UsageFact]) -> None:
        """Count all these facts at once (the caller checked `accepts_all` first)."""
        current = self._current(facts)
        if len(current) < len(facts):
            counted = {id(f) for f in current}
            self.late.extend(f for f in facts if id(f) not in counted)
        if not current:
            return
        effective = self.effective
        after = self.used + self._added(current)
        self.overage = max(0, self.overage + _over(after, effective) - _over(self.used, effective))
        self.used = after
        newest = max(f.at for f in current)
        if is_newest(newest, self.latest_at):
            self.latest_at = newest
        self.counted.extend(current)

    def _current(self, facts: Sequence[UsageFact]) -> Sequence[UsageFact]:
        """The facts timed in the current window (all of them, usually)."""
        window = self.quota.state.window
        if window is None or all(not f.at < window.start for f in facts):
            return facts
        return [f for f in facts if not f.at < window.start]

    def _added(self, current: Sequence[UsageFact]) -> int:
        """What these facts of the current window add to `used` (an additive meter)."""
        if self.meter is Meter.COUNT:
            return len(current)
        return sum(f.value for f in current)

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
