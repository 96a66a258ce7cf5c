"""Billing periods: half-open [start, end) windows and calendar interval arithmetic."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, ModelWrapValidatorHandler, field_validator, model_validator

from domain.errors import InvalidValue
from domain.value import FrozenValue

FIRST_YEAR, LAST_YEAR = 2, 8999
"""Instants the ledger takes: far enough from datetime's bounds that period and timezone
arithmetic never overflows."""


def in_range(instant: datetime) -> datetime:
    """The instant as given, when it falls (in UTC) between FIRST_YEAR and LAST_YEAR; else
    InvalidValue, which the edges report naming the field."""
    try:
        year = instant.astimezone(UTC).year
    except OverflowError:  # beyond year 9999 (or before 1) once in UTC
        year = 0
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise InvalidValue(f"the instant must fall between the years {FIRST_YEAR} and {LAST_YEAR}")
    return instant


class Interval(StrEnum):
    """How often a plan bills."""

    DAY = "day"
    MONTH = "month"
    YEAR = "year"


class Period(FrozenValue):
    """A half-open window [start, end) of aware datetimes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        return in_range(value)

    @model_validator(mode="wrap")
    @classmethod
    def _ordered(cls, data: Any, handler: ModelWrapValidatorHandler[Period]) -> Period:
        """Checked when made; a period passed on (into an event, a line) is the same frozen
        object, not checked again (an "after" validator runs at every pass)."""
        if type(data) is cls:
            return data
        period = handler(data)
        if period.start.tzinfo is None or period.end.tzinfo is None:
            raise InvalidValue("period bounds must carry a timezone", field="period")
        if not period.start < period.end:
            raise InvalidValue("period start must be before its end", field="period")
        return period

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    @classmethod
    def starting(
        cls,
        start: datetime,
        interval: Interval,
        anchor_day: int | None = None,
        timezone: str | None = None,
    ) -> Period:
        """The period of one interval from `start`, counted on the wall clock of `timezone`
        (IANA name; None = the instant's own offset), so a month starting at local midnight
        ends at local midnight whatever daylight-saving does in between."""
        return cls(start=start, end=add_interval(start, interval, 1, anchor_day, timezone))

    def following(
        self, interval: Interval, anchor_day: int | None = None, timezone: str | None = None
    ) -> Period:
        """The next period of the same interval, keeping the billing anchor day."""
        return Period.starting(self.end, interval, anchor_day, timezone)

    def fraction(self, window: Period) -> tuple[int, int]:
        """The part of this period that `window` (clipped to it) covers, in microseconds:
        (covered, total)."""
        start, end = max(self.start, window.start), min(self.end, window.end)
        covered = max(end - start, timedelta(0))
        return _micros(covered), _micros(self.duration)


def add_months(instant: datetime, months: int, anchor_day: int | None = None) -> datetime:
    """Add calendar months, clamping to the month's last day (Jan 31 + 1 month = Feb 28/29)."""
    total = instant.year * 12 + (instant.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    day = min(anchor_day or instant.day, calendar.monthrange(year, month)[1])
    return instant.replace(year=year, month=month, day=day)


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """An IANA timezone by name (cached)."""
    return ZoneInfo(name)


def local_day(instant: datetime, timezone: str | None) -> int:
    """The day of the month of `instant` on the wall clock of `timezone`."""
    return (instant.astimezone(zone(timezone)) if timezone else instant).day


def add_interval(
    instant: datetime,
    interval: Interval,
    count: int = 1,
    anchor_day: int | None = None,
    timezone: str | None = None,
) -> datetime:
    """Calendar arithmetic on the wall clock of `timezone` (a day may last 23 or 25 hours
    across a daylight-saving change); the answer is in UTC when a timezone is given."""
    local = instant.astimezone(zone(timezone)) if timezone else instant
    if interval is Interval.DAY:
        moved = local + timedelta(days=count)  # same tzinfo: wall-clock arithmetic
    elif interval is Interval.MONTH:
        moved = add_months(local, count, anchor_day)
    else:
        moved = add_months(local, 12 * count, anchor_day)
    return moved.astimezone(UTC) if timezone else moved


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


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
