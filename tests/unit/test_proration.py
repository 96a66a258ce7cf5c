"""The proration rule (domain/proration.py): the affected window, the fraction by second or by
day on the tenant's calendar, the credit/debit pair rounded once per line, and the cancel
credit. Worked examples from public documentation are in tests/unit/test_billing_examples.py;
the hypothesis bound (credit + debit = price difference x fraction within 1 minor unit per
line) is in tests/unit/test_billing_properties.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from domain.money import Money
from domain.period import Interval, Period
from domain.proration import (
    affected_window,
    credit_unused,
    fraction_of,
    prorate,
    start_of_local_day,
)

NY = ZoneInfo("America/New_York")
APRIL = Period(start=datetime(2026, 4, 1, tzinfo=UTC), end=datetime(2026, 5, 1, tzinfo=UTC))
JANUARY = Period(start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2026, 2, 1, tzinfo=UTC))


def usd(amount: int) -> Money:
    return Money(amount=amount, currency="USD")


def april(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 4, day, hour, tzinfo=UTC)


def amounts(items: list) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [(item.kind, item.amount.amount) for item in items]


# --- the affected window -------------------------------------------------------------------


def test_in_advance_the_window_is_the_rest_of_the_period() -> None:
    assert affected_window(APRIL, april(16), "in_advance") == Period(start=april(16), end=APRIL.end)


def test_in_arrears_the_window_is_the_time_before_the_change() -> None:
    assert affected_window(APRIL, april(16), "in_arrears") == Period(
        start=APRIL.start, end=april(16)
    )


@pytest.mark.parametrize("at", [APRIL.start, APRIL.end, APRIL.start - timedelta(seconds=1)])
def test_a_change_outside_the_open_period_affects_nothing(at: datetime) -> None:
    assert affected_window(APRIL, at, "in_advance") is None
    assert affected_window(APRIL, at, "in_arrears") is None


# --- the fraction --------------------------------------------------------------------------


def test_the_fraction_by_second_is_exact_to_the_microsecond() -> None:
    window = Period(start=april(16, 12), end=APRIL.end)
    assert fraction_of(APRIL, window) == Fraction(14 * 24 + 12, 30 * 24)
    tiny = Period(start=APRIL.end - timedelta(microseconds=1), end=APRIL.end)
    assert fraction_of(APRIL, tiny) == Fraction(1, 30 * 86_400 * 1_000_000)


def test_the_fraction_by_day_counts_whole_days_on_the_local_calendar() -> None:
    # March 2026 in New York has a 23-hour day (March 8): still one day of 31
    march = Period(
        start=datetime(2026, 3, 1, tzinfo=NY).astimezone(UTC),
        end=datetime(2026, 4, 1, tzinfo=NY).astimezone(UTC),
    )
    window = Period(start=datetime(2026, 3, 8, tzinfo=NY).astimezone(UTC), end=march.end)
    assert fraction_of(march, window, "day", "America/New_York") == Fraction(24, 31)
    # by second the short day makes the share smaller than 24/31
    assert fraction_of(march, window) < Fraction(24, 31)


def test_the_day_count_follows_the_tenants_calendar_not_utc() -> None:
    # 2026-01-16 03:00 UTC is still January 15 in New York
    period = Period(
        start=datetime(2026, 1, 1, tzinfo=NY).astimezone(UTC),
        end=datetime(2026, 2, 1, tzinfo=NY).astimezone(UTC),
    )
    at = datetime(2026, 1, 16, 3, tzinfo=UTC)
    assert start_of_local_day(at, "America/New_York") == datetime(2026, 1, 15, tzinfo=NY)
    [credit, debit] = prorate(
        period, at, ("Old", usd(3100)), ("New", usd(6200)),
        timing="in_advance", unit="day", timezone="America/New_York",
    )  # fmt: skip
    assert (credit.amount, debit.amount) == (usd(-1700), usd(3400))  # 17 of 31 days
    assert credit.window.start == datetime(2026, 1, 15, tzinfo=NY)


# --- the credit / debit pair ---------------------------------------------------------------


def test_in_advance_the_old_price_is_credited_and_the_new_one_charged_for_the_rest() -> None:
    items = prorate(APRIL, april(16), ("Pro", usd(1000)), ("Big", usd(2000)), timing="in_advance")
    assert amounts(items) == [("proration_credit", -500), ("proration_debit", 1000)]
    credit, debit = items
    assert credit.unit_amount == usd(-1000) and debit.unit_amount == usd(2000)
    assert credit.description.startswith("Unused time on Pro (2026-04-16")
    assert debit.description.startswith("Remaining time on Big (2026-04-16")
    assert credit.window == debit.window == Period(start=april(16), end=APRIL.end)


def test_in_arrears_the_new_price_is_credited_and_the_old_one_charged_before_the_change() -> None:
    # the period's fee is charged at its end at the new price: credit it for [start, t) and
    # charge the old price for that time instead
    items = prorate(APRIL, april(16), ("Big", usd(2000)), ("Pro", usd(1000)), timing="in_arrears")
    assert amounts(items) == [("proration_credit", -1000), ("proration_debit", 500)]
    assert items[0].description.startswith("Big for time before the change")
    assert items[1].description.startswith("Time on Pro")
    assert items[0].window == Period(start=APRIL.start, end=april(16))


def test_a_downgrade_credits_more_than_it_charges() -> None:
    items = prorate(APRIL, april(16), ("Big", usd(2000)), ("Pro", usd(1000)), timing="in_advance")
    assert amounts(items) == [("proration_credit", -1000), ("proration_debit", 500)]


def test_each_line_is_rounded_once_half_up() -> None:
    # 9.99 for half of April: 4.995 -> 5.00 each way (halves away from zero)
    items = prorate(APRIL, april(16), ("One", usd(999)), ("Three", usd(2997)), timing="in_advance")
    assert amounts(items) == [("proration_credit", -500), ("proration_debit", 1499)]


def test_zero_lines_are_left_out() -> None:
    items = prorate(APRIL, april(16), ("Free", usd(0)), ("Pro", usd(1000)), timing="in_advance")
    assert amounts(items) == [("proration_debit", 500)]
    late = APRIL.end - timedelta(seconds=1)  # 1 second of 30 days of 10.00 rounds to 0
    assert prorate(APRIL, late, ("Pro", usd(1000)), ("Big", usd(2000)), timing="in_advance") == []


def test_a_change_outside_the_period_gives_no_lines() -> None:
    assert prorate(APRIL, APRIL.end, ("A", usd(1)), ("B", usd(2)), timing="in_advance") == []


def test_zero_decimal_currencies_round_to_the_whole_yen() -> None:
    yen = Money(amount=980, currency="JPY")
    items = prorate(APRIL, april(21), ("Basic", yen), ("Plus", yen * 2), timing="in_advance")
    # 10 of 30 days: 326.67 -> 327 yen, 653.33 -> 653 yen
    assert [(i.amount.amount, i.amount.currency) for i in items] == [(-327, "JPY"), (653, "JPY")]


def test_the_day_unit_moves_the_change_to_the_start_of_its_local_day() -> None:
    by_second = prorate(
        JANUARY, datetime(2026, 1, 16, 18, tzinfo=UTC), ("A", usd(3100)), ("B", usd(6200)),
        timing="in_advance",
    )  # fmt: skip
    by_day = prorate(
        JANUARY, datetime(2026, 1, 16, 18, tzinfo=UTC), ("A", usd(3100)), ("B", usd(6200)),
        timing="in_advance", unit="day",
    )  # fmt: skip
    assert amounts(by_day) == [("proration_credit", -1600), ("proration_debit", 3200)]
    assert amounts(by_second) == [("proration_credit", -1525), ("proration_debit", 3050)]


def test_a_yearly_period_prorates_over_its_365_days() -> None:
    year = Period.starting(datetime(2026, 1, 1, tzinfo=UTC), Interval.YEAR)
    items = prorate(
        year, datetime(2026, 7, 2, tzinfo=UTC), ("Yearly", usd(36500)), ("Yearly+", usd(73000)),
        timing="in_advance", unit="day",
    )  # fmt: skip
    assert amounts(items) == [("proration_credit", -18300), ("proration_debit", 36600)]  # 183 days


# --- a cancel now ------------------------------------------------------------------------------


def test_a_cancel_now_credits_only_the_unused_time() -> None:
    items = credit_unused(APRIL, april(16), ("Pro", usd(1000)))
    assert amounts(items) == [("proration_credit", -500)]
    assert items[0].window == Period(start=april(16), end=APRIL.end)
    assert credit_unused(APRIL, APRIL.end, ("Pro", usd(1000))) == []


def test_a_cancel_now_by_day_credits_the_days_after_the_cancel_day() -> None:
    items = credit_unused(
        JANUARY, datetime(2026, 1, 21, 9, tzinfo=UTC), ("Pro", usd(3100)), unit="day"
    )
    assert amounts(items) == [("proration_credit", -1100)]  # January 21 to 31: 11 days


def test_by_day_a_change_on_the_first_day_re_prices_the_whole_period() -> None:
    # the change moves to the start of its local day, here the period's start: in advance
    # all 31 days of the old fee are credited and of the new one charged
    at = datetime(2026, 1, 1, 9, tzinfo=UTC)
    items = prorate(
        JANUARY, at, ("A", usd(3100)), ("B", usd(6200)), timing="in_advance", unit="day"
    )
    assert amounts(items) == [("proration_credit", -3100), ("proration_debit", 6200)]
    assert items[0].window == JANUARY
    # in arrears nothing was used before the change's day: nothing to re-price
    assert prorate(JANUARY, at, ("B", usd(6200)), ("A", usd(3100)), timing="in_arrears") != []
    assert (
        prorate(JANUARY, at, ("B", usd(6200)), ("A", usd(3100)), timing="in_arrears", unit="day")
        == []
    )
    # a change at the very start instant re-prices nothing, by day as by second
    assert prorate(JANUARY, JANUARY.start, ("A", usd(1)), ("B", usd(2)), timing="in_advance",
                   unit="day") == []  # fmt: skip
    assert credit_unused(JANUARY, at, ("A", usd(3100)), unit="day")[0].amount == usd(-3100)


def test_by_day_a_change_after_the_period_re_prices_nothing() -> None:
    # a period from 15:00; a change at 16:00 on its last day is after its end, though the
    # start of that day is before it
    afternoon = Period(
        start=datetime(2026, 1, 1, 15, tzinfo=UTC), end=datetime(2026, 2, 1, 15, tzinfo=UTC)
    )
    late = datetime(2026, 2, 1, 16, tzinfo=UTC)
    for timing in ("in_advance", "in_arrears"):
        assert prorate(afternoon, late, ("A", usd(3100)), ("B", usd(6200)),
                       timing=timing, unit="day") == []  # fmt: skip
    assert credit_unused(afternoon, late, ("A", usd(3100)), unit="day") == []
