"""Meters: how usage values fold into the quantity a quota limits and billing charges.

The one place the meter rules live; the quota aggregate, the usage projector and the
billing query all follow them (the billing query computes the same figures in SQL, and
tests hold it equal to `aggregate`).

For a plain `{feature_key, quantity}` usage event the value is its quantity.

- sum: the total of the values;
- count: the number of events;
- max: the largest value;
- unique_count: the number of distinct values;
- latest: the value of the event with the latest time; on a tie in time the later event
  (the later log position) wins.

An empty sequence has quantity 0 under every meter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from domain.catalog import Meter


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=_Ordered)


def step(meter: Meter, quantity: int, value: int, *, known: bool, newest: bool) -> int:
    """The quantity after one more event of `value`.

    `known`: the value is already among the distinct values counted (unique_count);
    `newest`: the event is at least as late as the one that set the quantity (latest).
    """
    meter = Meter(meter)
    if meter is Meter.SUM:
        return quantity + value
    if meter is Meter.COUNT:
        return quantity + 1
    if meter is Meter.MAX:
        return max(quantity, value)
    if meter is Meter.UNIQUE_COUNT:
        return quantity if known else quantity + 1
    return value if newest else quantity  # LATEST


def is_newest(at: T, latest_at: T | None) -> bool:
    """Whether an event at `at`, folded after the one at `latest_at`, takes over `latest`
    (ties go to the later event)."""
    return latest_at is None or not at < latest_at


def remembers_values(meter: Meter) -> bool:
    """Only unique_count needs the set of distinct values seen."""
    return meter is Meter.UNIQUE_COUNT


def aggregate(meter: Meter, values: Iterable[int]) -> int:
    """The quantity of events with these values, in the order they happened."""
    quantity = 0
    seen: set[int] = set()
    for value in values:
        quantity = step(meter, quantity, value, known=value in seen, newest=True)
        seen.add(value)
    return quantity


def aggregate_timed(meter: Meter, readings: Iterable[tuple[T, int, int]]) -> int:
    """The quantity of (time, position, value) readings given in any order."""
    ordered = sorted(readings, key=lambda reading: (reading[0], reading[1]))
    return aggregate(meter, (value for _at, _position, value in ordered))


@dataclass(frozen=True)
class Summary:
    """Every figure a meter may ask for, over one set of events (e.g. from SQL)."""

    total: int = 0
    events: int = 0
    largest: int | None = None
    distinct: int = 0
    latest: int | None = None

    def quantity(self, meter: Meter) -> int:
        """The quantity under `meter` (0 for no events)."""
        if self.events == 0:
            return 0
        figures = {
            Meter.SUM: self.total,
            Meter.COUNT: self.events,
            Meter.MAX: self.largest or 0,
            Meter.UNIQUE_COUNT: self.distinct,
            Meter.LATEST: self.latest or 0,
        }
        return figures[meter]


def percent_used(used: int | None, limit: int | None) -> float | None:
    """How much of a limit is used, in percent to two decimals (None when unlimited; a
    zero limit is 100% used)."""
    if used is None or limit is None:
        return None
    if limit == 0:
        return 100.0
    return round(used * 100 / limit, 2)
