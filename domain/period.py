"""Billing periods: half-open [start, end) windows and calendar interval arithmetic."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, model_validator

from domain.errors import InvalidValue


class Interval(StrEnum):
    """How often a plan bills."""

    DAY = "day"
    MONTH = "month"
    YEAR = "year"


class Period(BaseModel):
    """A half-open window [start, end) of aware datetimes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidValue("period bounds must carry a timezone", field="period")
        if not self.start < self.end:
            raise InvalidValue("period start must be before its end", field="period")
        return self

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    @classmethod
    def starting(cls, start: datetime, interval: Interval, anchor_day: int | None = None) -> Period:
        return cls(start=start, end=add_interval(start, interval, 1, anchor_day))

    def following(self, interval: Interval, anchor_day: int | None = None) -> Period:
        """The next period of the same interval, keeping the billing anchor day."""
        return Period.starting(self.end, interval, anchor_day)


def add_months(instant: datetime, months: int, anchor_day: int | None = None) -> datetime:
    """Add calendar months, clamping to the month's last day (Jan 31 + 1 month = Feb 28/29)."""
    total = instant.year * 12 + (instant.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    day = min(anchor_day or instant.day, calendar.monthrange(year, month)[1])
    return instant.replace(year=year, month=month, day=day)


def add_interval(
    instant: datetime, interval: Interval, count: int = 1, anchor_day: int | None = None
) -> datetime:
    if interval is Interval.DAY:
        return instant + timedelta(days=count)
    if interval is Interval.MONTH:
        return add_months(instant, count, anchor_day)
    return add_months(instant, 12 * count, anchor_day)


def window_containing(anchor: datetime, interval: Interval, instant: datetime) -> Period:
    """The period of `interval`, counted from `anchor`, that contains `instant`."""
    if instant < anchor:
        raise InvalidValue("instant is before the anchor", field="at")
    if interval is Interval.DAY:
        start = anchor + timedelta(days=(instant - anchor) // timedelta(days=1))
        return Period(start=start, end=start + timedelta(days=1))
    step = 1 if interval is Interval.MONTH else 12
    n = max(((instant.year - anchor.year) * 12 + instant.month - anchor.month) // step, 0)
    while n > 0 and add_months(anchor, n * step, anchor.day) > instant:
        n -= 1
    while add_months(anchor, (n + 1) * step, anchor.day) <= instant:
        n += 1
    start = add_months(anchor, n * step, anchor.day)
    return Period(start=start, end=add_months(anchor, (n + 1) * step, anchor.day))
