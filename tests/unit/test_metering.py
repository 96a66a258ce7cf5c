"""Meter rules (domain/metering.py): the one place sum, count, max, unique_count, latest live."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.catalog import Meter
from domain.metering import Summary, aggregate, aggregate_timed, is_newest, step

T0 = datetime(2026, 1, 1, tzinfo=UTC)
values = st.lists(st.integers(1, 12), max_size=40)


def test_the_issue_example_five_three_five() -> None:
    # issue 8: posting 5, 3, 5 reports 13 for every meter today; expected 3, 5, 2, 5
    posted = [5, 3, 5]
    assert aggregate(Meter.SUM, posted) == 13
    assert aggregate(Meter.COUNT, posted) == 3
    assert aggregate(Meter.MAX, posted) == 5
    assert aggregate(Meter.UNIQUE_COUNT, posted) == 2
    assert aggregate(Meter.LATEST, posted) == 5
    assert aggregate(Meter.LATEST, [5, 3]) == 3


@pytest.mark.parametrize("meter", list(Meter))
def test_no_events_is_zero_under_every_meter(meter: Meter) -> None:
    assert aggregate(meter, []) == 0
    assert Summary().quantity(meter) == 0


@given(values)
def test_each_meter_is_its_plain_definition(posted: list[int]) -> None:
    assert aggregate(Meter.SUM, posted) == sum(posted)
    assert aggregate(Meter.COUNT, posted) == len(posted)
    assert aggregate(Meter.MAX, posted) == max(posted, default=0)
    assert aggregate(Meter.UNIQUE_COUNT, posted) == len(set(posted))
    assert aggregate(Meter.LATEST, posted) == (posted[-1] if posted else 0)


@given(values)
def test_a_summary_of_the_values_gives_the_same_quantity(posted: list[int]) -> None:
    summary = Summary(
        total=sum(posted),
        events=len(posted),
        largest=max(posted, default=None),
        distinct=len(set(posted)),
        latest=posted[-1] if posted else None,
    )
    for meter in Meter:
        assert summary.quantity(meter) == aggregate(meter, posted)


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 9)), max_size=30), st.randoms())
def test_latest_is_by_time_then_position_whatever_the_order_given(
    timed: list[tuple[int, int]], shuffler: random.Random
) -> None:
    readings = [(T0 + timedelta(minutes=m), position, v) for position, (m, v) in enumerate(timed)]
    shuffled = list(readings)
    shuffler.shuffle(shuffled)
    expected = max(readings, key=lambda r: (r[0], r[1]))[2] if readings else 0
    assert aggregate_timed(Meter.LATEST, shuffled) == expected
    for meter in (Meter.SUM, Meter.COUNT, Meter.MAX, Meter.UNIQUE_COUNT):
        assert aggregate_timed(meter, shuffled) == aggregate(meter, [v for _, v in timed])


def test_a_tie_in_time_goes_to_the_later_event() -> None:
    assert aggregate_timed(Meter.LATEST, [(T0, 2, 7), (T0, 1, 9)]) == 7
    assert is_newest(T0, T0) and is_newest(T0, None)
    assert not is_newest(T0, T0 + timedelta(seconds=1))


def test_one_step_per_meter() -> None:
    assert step(Meter.SUM, 4, 3, known=True, newest=False) == 7
    assert step(Meter.COUNT, 4, 30, known=True, newest=False) == 5
    assert step(Meter.MAX, 4, 3, known=False, newest=True) == 4
    assert step(Meter.MAX, 4, 9, known=False, newest=False) == 9
    assert step(Meter.UNIQUE_COUNT, 4, 3, known=True, newest=True) == 4
    assert step(Meter.UNIQUE_COUNT, 4, 3, known=False, newest=True) == 5
    assert step(Meter.LATEST, 4, 3, known=False, newest=True) == 3
    assert step(Meter.LATEST, 4, 3, known=False, newest=False) == 4
    assert step("max", 4, 9, known=False, newest=False) == 9  # type: ignore[arg-type]
