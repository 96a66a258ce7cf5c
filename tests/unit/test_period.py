from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.clock import SettableClock
from domain.errors import InvalidValue
from domain.period import Interval, Period, add_months, window_containing


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_period_is_half_open() -> None:
    period = Period(start=utc(2026, 1, 1), end=utc(2026, 2, 1))
    assert period.contains(utc(2026, 1, 1))
    assert not period.contains(utc(2026, 2, 1))


def test_period_must_be_ordered_and_aware() -> None:
    with pytest.raises(ValidationError, match="before its end"):
        Period(start=utc(2026, 2, 1), end=utc(2026, 1, 1))
    with pytest.raises(ValidationError, match="timezone"):
        Period(start=datetime(2026, 1, 1), end=datetime(2026, 2, 1))


def test_month_end_clamps_and_keeps_anchor() -> None:
    jan31 = utc(2026, 1, 31)
    assert add_months(jan31, 1) == utc(2026, 2, 28)
    feb = Period.starting(jan31, Interval.MONTH, anchor_day=31)
    march = feb.following(Interval.MONTH, anchor_day=31)
    assert march.start == utc(2026, 2, 28) and march.end == utc(2026, 3, 31)
    assert add_months(utc(2024, 1, 31), 1) == utc(2024, 2, 29)
    assert Period.starting(utc(2024, 2, 29), Interval.YEAR).end == utc(2025, 2, 28)


@given(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(min_value=0, max_value=3000),
    st.sampled_from(list(Interval)),
)
def test_window_containing_contains_the_instant(
    anchor: datetime, days: int, interval: Interval
) -> None:
    instant = anchor + timedelta(days=days, seconds=days * 37)
    window = window_containing(anchor, interval, instant)
    assert window.contains(instant)
    assert window.start >= anchor


def test_window_before_anchor_is_refused() -> None:
    with pytest.raises(InvalidValue):
        window_containing(utc(2026, 1, 1), Interval.MONTH, utc(2025, 1, 1))


def test_settable_clock_moves_forward_only() -> None:
    clock = SettableClock(utc(2026, 1, 1))
    clock.advance(timedelta(days=1))
    assert clock.now() == utc(2026, 1, 2)
    with pytest.raises(InvalidValue):
        clock.set(utc(2025, 1, 1))
    with pytest.raises(InvalidValue):
        SettableClock(datetime(2026, 1, 1))
