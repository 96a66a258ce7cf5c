"""Proration: what a change in the middle of a billing period owes or gives back.

The rule (docs/pricing.md "Proration"): a change at instant t inside the period [S, E)
affects a window W of it. With the base fee billed in advance the period's fee was charged
at S at the old price, so W = [t, E): the unused time of the old price is credited and the
remaining time of the new price is charged. In arrears the period's fee will be charged at E
at the price in force then (the new one), so W = [S, t): that charge is credited for W and
the old price is charged for it. Either way the period costs old x (time on old) + new x
(time on new). Each line is price x fraction(W), rounded once, half-up, to the minor unit.

The fraction is counted to the second (microseconds in fact) by default, or by whole days
on the tenant's calendar (`unit="day"`): the change instant moves to the start of its local
day (not before the period's start: a change on the first day re-prices the whole period in
advance and nothing in arrears) and the fraction is whole days of W over whole days of the
period. A change outside the open period (at its start or after its end) re-prices nothing.
"""

from __future__ import annotations

from datetime import datetime, time
from fractions import Fraction
from typing import Literal

from pydantic import ConfigDict, Field

from domain.money import Money
from domain.period import Period, zone
from domain.value import FrozenValue

ProrationUnit = Literal["second", "day"]
ProrationMode = Literal["create_prorations", "always_invoice", "none"]
FeeTiming = Literal["in_advance", "in_arrears"]


class ProrationItem(FrozenValue):
    """One proration line waiting for the next invoice (credit <= 0 < debit)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["proration_credit", "proration_debit"]
    description: str
    quantity: int = 1
    unit_amount: Money
    amount: Money
    window: Period
    source_event_ids: list[str] = Field(default_factory=list)


def affected_window(period: Period, at: datetime, timing: FeeTiming) -> Period | None:
    """The part of the period a change at `at` re-prices (None when it is empty)."""
    if not period.start < at < period.end:
        return None
    return _window(period, at, timing)


def _window(period: Period, at: datetime, timing: FeeTiming) -> Period | None:
    """[at, end) in advance, [start, at) in arrears, for `at` in [start, end)."""
    if timing == "in_advance":
        return Period(start=at, end=period.end)
    return Period(start=period.start, end=at) if at > period.start else None


def fraction_of(
    period: Period, window: Period, unit: ProrationUnit = "second", timezone: str = "UTC"
) -> Fraction:
    """How much of `period` the window covers: exact to the microsecond or in whole days."""
    if unit == "day":
        days = _local_days(window, timezone)
        total = _local_days(period, timezone)
        return Fraction(min(days, total), total) if total else Fraction(0)
    covered, total = period.fraction(window)
    return Fraction(covered, total)


def _local_days(window: Period, timezone: str) -> int:
    tz = zone(timezone)
    return (window.end.astimezone(tz).date() - window.start.astimezone(tz).date()).days


def start_of_local_day(instant: datetime, timezone: str) -> datetime:
    local = instant.astimezone(zone(timezone))
    return datetime.combine(local.date(), time(0), tzinfo=local.tzinfo)


def prorate(
    period: Period,
    at: datetime,
    charged: tuple[str, Money],
    due: tuple[str, Money],
    *,
    timing: FeeTiming,
    unit: ProrationUnit = "second",
    timezone: str = "UTC",
) -> list[ProrationItem]:
    """Credit `charged` (label, price) and charge `due` for the affected window.

    In advance `charged` is the old price and `due` the new one; in arrears the caller
    passes the new price as `charged` and the old one as `due` (see the module rule).
    Zero lines are left out."""
    if not period.start < at < period.end:
        return []
    if unit == "day":  # a change on the period's first day counts from its start
        at = max(start_of_local_day(at, timezone), period.start)
    window = _window(period, at, timing)
    if window is None:
        return []
    share = fraction_of(period, window, unit, timezone)
    items = [
        _item("proration_credit", f"Unused time on {charged[0]}", -charged[1], share, window),
        _item("proration_debit", f"Remaining time on {due[0]}", due[1], share, window),
    ]
    if timing == "in_arrears":
        items = [
            _item(
                "proration_credit",
                f"{charged[0]} for time before the change",
                -charged[1],
                share,
                window,
            ),
            _item("proration_debit", f"Time on {due[0]}", due[1], share, window),
        ]
    return [item for item in items if not item.amount.is_zero()]


def credit_unused(
    period: Period,
    at: datetime,
    charged: tuple[str, Money],
    *,
    unit: ProrationUnit = "second",
    timezone: str = "UTC",
) -> list[ProrationItem]:
    """A cancel now of a fee paid in advance: credit the unused time [at, end)."""
    items = prorate(
        period,
        at,
        charged,
        (charged[0], Money.zero(charged[1].currency)),
        timing="in_advance",
        unit=unit,
        timezone=timezone,
    )
    return [item for item in items if item.kind == "proration_credit"]


def _item(kind: str, label: str, price: Money, share: Fraction, window: Period) -> ProrationItem:
    amount = price.scale(share)
    if kind == "proration_credit" and amount.amount > 0:
        amount, price = -amount, -price
    return ProrationItem(
        kind=kind,
        description=f"{label} ({_dates(window)})",
        unit_amount=price,
        amount=amount,
        window=window,
    )


def _dates(window: Period) -> str:
    return f"{window.start.isoformat()} - {window.end.isoformat()}"
