"""Billing points (domain/billing.py): when each invoice of a subscription falls due and what
periods it bills. First on the aggregate alone (pure), then through billing runs on the test
clock: the first invoice in advance at the start, a trial delaying it, in arrears at the
period's end, the final invoice of a cancel now or at the period's end, a pause not billed,
periods at local midnight across daylight-saving changes, and month ends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from domain.billing import (
    BillingPoint,
    fee_lines,
    next_billing_point,
    subscription_invoice_id,
    upcoming_point,
)
from domain.money import Money
from domain.period import Period
from domain.subscription import Subscription
from tests.factories import T0, cause, terms
from tests.unit.test_billing_examples import Billing, lines, utc

NY = ZoneInfo("America/New_York")
FEB = utc(2026, 2, 1)
MAR = utc(2026, 3, 1)


def subscribe(
    *, timing: str = "in_advance", trial_days: int = 0, price: int = 3100, seats: bool = False
) -> Subscription:
    features = [{"key": "seats", "kind": "seats", "seat_price": {"amount": 500, "currency": "USD"}}]
    plan = terms(price=price, trial_days=trial_days, features=features if seats else None)
    plan = plan.model_copy(update={"base_fee_timing": timing})
    return Subscription.start(uuid4(), "acme", "t1", plan, cause())


def invoice(sub: Subscription, point: BillingPoint, prorations: int | None = None) -> None:
    """What the billing run records once the point's invoice is drafted."""
    billed = len(sub.state.pending_prorations) if prorations is None else prorations
    sub.record_invoice(uuid4(), cause(point.at), point.at, billed)


def due(sub: Subscription) -> BillingPoint:
    point = next_billing_point(sub.state)
    assert point is not None
    return point


@pytest.fixture
def billing() -> Iterator[Billing]:
    driver = Billing()
    try:
        yield driver
    finally:
        driver.close()


# --- in advance ------------------------------------------------------------------------------


def test_the_first_invoice_in_advance_falls_due_at_the_start() -> None:
    sub = subscribe()
    point = due(sub)
    january = Period(start=T0, end=FEB)
    assert (point.at, point.kind, point.fee_period, point.usage_period) == (
        T0,
        "period",
        january,
        None,
    )
    assert point.period == january
    invoice(sub, point)
    assert next_billing_point(sub.state) is None  # nothing more until the renewal


def test_in_advance_each_renewal_bills_the_new_period_and_the_usage_of_the_last() -> None:
    sub = subscribe()
    invoice(sub, due(sub))
    sub.renew(cause(FEB))
    point = due(sub)
    assert point.at == FEB
    assert point.fee_period == Period(start=FEB, end=MAR)
    assert point.usage_period == Period(start=T0, end=FEB)
    assert point.period == point.usage_period


def test_a_trial_delays_the_first_invoice_to_the_trial_end() -> None:
    sub = subscribe(trial_days=14)
    assert next_billing_point(sub.state) is None  # a trial is not billed
    sub.end_trial(cause(T0 + timedelta(days=14)))
    point = due(sub)
    assert point.at == T0 + timedelta(days=14)
    assert point.fee_period == Period.starting(point.at, sub.state.terms.interval)
    assert point.usage_period is None  # usage during the trial is not billed


def test_the_upcoming_invoice_of_a_trial_is_the_first_fee_at_its_end() -> None:
    sub = subscribe(trial_days=14)
    point = upcoming_point(sub.state)
    assert point is not None
    assert point.at == T0 + timedelta(days=14)
    assert point.fee_period == Period(start=point.at, end=utc(2026, 2, 15))


def test_the_upcoming_invoice_in_advance_is_the_next_period_at_this_ones_end() -> None:
    sub = subscribe()
    invoice(sub, due(sub))
    sub.change_plan(terms("team", price=9900), cause(T0 + timedelta(days=3)), "period_end")
    point = upcoming_point(sub.state)
    assert point is not None
    assert (point.at, point.fee_period, point.usage_period) == (
        FEB,
        Period(start=FEB, end=MAR),
        Period(start=T0, end=FEB),
    )
    assert point.fee_terms.plan_key == "team"  # the scheduled plan is billed from then
    assert point.usage_terms.plan_key == "pro"


# --- in arrears ------------------------------------------------------------------------------


def test_in_arrears_nothing_is_due_at_the_start_and_the_fee_falls_due_at_the_end() -> None:
    sub = subscribe(timing="in_arrears")
    assert next_billing_point(sub.state) is None
    sub.renew(cause(FEB))
    point = due(sub)
    january = Period(start=T0, end=FEB)
    assert (point.at, point.fee_period, point.usage_period) == (FEB, january, january)
    assert [li.amount.amount for li in fee_lines(sub.state, point)] == [3100]
    invoice(sub, point)
    assert next_billing_point(sub.state) is None


def test_in_arrears_the_fee_is_billed_at_the_terms_in_force_at_the_end() -> None:
    sub = subscribe(timing="in_arrears")
    sub.change_plan(terms("team", price=6200).model_copy(update={"base_fee_timing": "in_arrears"}),
                    cause(T0 + timedelta(days=20)), "period_end")  # fmt: skip
    sub.renew(cause(FEB))
    point = due(sub)
    assert point.fee_terms.plan_key == "pro"  # January was on pro; team starts in February
    assert sub.state.terms.plan_key == "team"


def test_the_upcoming_invoice_in_arrears_bills_the_current_period_at_its_end() -> None:
    sub = subscribe(timing="in_arrears")
    point = upcoming_point(sub.state)
    assert point is not None
    january = Period(start=T0, end=FEB)
    assert (point.at, point.fee_period, point.usage_period) == (FEB, january, january)


# --- final invoices --------------------------------------------------------------------------


def test_a_cancel_now_in_advance_ends_in_a_final_invoice_with_the_credit_and_the_usage() -> None:
    sub = subscribe()
    invoice(sub, due(sub))
    at = T0 + timedelta(days=10)
    sub.cancel(cause(at), proration="create_prorations")
    point = due(sub)
    assert (point.at, point.kind, point.fee_period) == (at, "final", None)  # the fee was billed
    assert point.usage_period == Period(start=T0, end=at)
    [credit] = sub.state.pending_prorations
    assert credit.amount == Money(amount=-2100, currency="USD")  # 21 of 31 days unused


def test_a_cancel_now_without_proration_credits_nothing() -> None:
    sub = subscribe()
    invoice(sub, due(sub))
    sub.cancel(cause(T0 + timedelta(days=10)))
    assert sub.state.pending_prorations == []
    assert due(sub).kind == "final"


def test_a_cancel_now_in_arrears_bills_the_share_of_the_fee_used() -> None:
    sub = subscribe(timing="in_arrears", seats=True)
    at = T0 + timedelta(days=10)
    sub.cancel(cause(at), proration="create_prorations")
    assert sub.state.pending_prorations == []  # in arrears nothing was paid ahead
    point = due(sub)
    assert (point.kind, point.fee_period, point.fee_share) == (
        "final",
        Period(start=T0, end=FEB),
        (10 * 86_400_000_000, 31 * 86_400_000_000),
    )
    assert [li.amount.amount for li in fee_lines(sub.state, point)] == [1000, 161]


def test_a_cancel_at_period_end_ends_in_a_final_invoice_at_the_end() -> None:
    for timing, fee in (("in_advance", None), ("in_arrears", Period(start=T0, end=FEB))):
        sub = subscribe(timing=timing)
        if timing == "in_advance":
            invoice(sub, due(sub))
        sub.cancel(cause(T0 + timedelta(days=5)), at_period_end=True)
        assert next_billing_point(sub.state) is None, timing
        upcoming = upcoming_point(sub.state)
        assert upcoming is not None and (upcoming.at, upcoming.kind) == (FEB, "final")
        sub.renew(cause(FEB))
        point = due(sub)
        assert (point.at, point.kind, point.fee_period) == (FEB, "final", fee), timing
        assert point.usage_period == Period(start=T0, end=FEB)
        invoice(sub, point)
        assert next_billing_point(sub.state) is None


def test_a_trial_canceled_now_is_never_billed() -> None:
    sub = subscribe(trial_days=14)
    sub.cancel(cause(T0 + timedelta(days=3)))
    assert next_billing_point(sub.state) is None


def test_an_ended_subscription_in_arrears_still_bills_the_period_before_its_last() -> None:
    # renewed at February 1, canceled before that period's invoice was made: January's fee
    # is still due (then the final invoice for the hour of February used)
    sub = subscribe(timing="in_arrears")
    sub.renew(cause(FEB))
    sub.cancel(cause(FEB + timedelta(hours=1)))
    first = due(sub)
    assert (first.at, first.kind, first.fee_period) == (FEB, "period", Period(start=T0, end=FEB))
    invoice(sub, first)
    final = due(sub)
    assert (final.at, final.kind) == (FEB + timedelta(hours=1), "final")
    assert final.fee_period == Period(start=FEB, end=MAR)


def test_pause_then_cancel_in_arrears_bills_only_the_time_before_the_pause() -> None:
    sub = subscribe(timing="in_arrears")
    sub.pause(cause(T0 + timedelta(days=10)))
    sub.cancel(cause(T0 + timedelta(days=20)))
    point = due(sub)
    assert point.at == T0 + timedelta(days=20)
    assert point.usage_period == Period(start=T0, end=T0 + timedelta(days=10))
    assert [li.amount.amount for li in fee_lines(sub.state, point)] == [1000]  # 10 of 31 days


def test_the_invoice_of_a_point_has_one_identity() -> None:
    sub = subscribe()
    point = due(sub)
    assert subscription_invoice_id("acme", sub.id, point.at) == subscription_invoice_id(
        "acme", sub.id, point.at
    )
    assert subscription_invoice_id("acme", sub.id, point.at) != subscription_invoice_id(
        "acme", sub.id, point.at + timedelta(seconds=1)
    )


# --- pauses ----------------------------------------------------------------------------------


def test_a_paused_subscription_has_no_billing_point_and_resuming_moves_the_period() -> None:
    sub = subscribe()
    invoice(sub, due(sub))
    sub.pause(cause(T0 + timedelta(days=10)))
    assert next_billing_point(sub.state) is None
    assert upcoming_point(sub.state) is None
    sub.resume(cause(T0 + timedelta(days=17)))
    assert sub.state.current_period == Period(start=T0, end=FEB + timedelta(days=7))
    assert next_billing_point(sub.state) is None  # the fee of the moved period was billed


def test_paused_time_is_not_billed_the_period_moves_on_by_it(billing: Billing) -> None:
    billing.plan("pro", 3100)
    sub = billing.start("pro")
    billing.run(utc(2026, 1, 10))
    billing.do("pause_subscription", subscription_id=str(sub))
    report = billing.run(utc(2026, 2, 15))
    assert (report["renewed"], report["invoiced"]) == (0, 0)  # nothing renews while paused
    billing.do("resume_subscription", subscription_id=str(sub))  # paused 36 days
    assert billing.subscription(sub).state.current_period.end == utc(2026, 3, 9)
    billing.run(utc(2026, 3, 9))
    _opening, renewal = billing.invoices()
    assert renewal.state.finalized_at == utc(2026, 3, 9)
    assert lines(renewal) == [("base_fee", 1, 3100)]
    fee = renewal.state.lines[0].period
    assert fee is not None and (fee.start, fee.end) == (utc(2026, 3, 9), utc(2026, 4, 9))


# --- billing runs --------------------------------------------------------------------------


def test_a_run_bills_the_start_and_a_trial_at_its_end(billing: Billing) -> None:
    billing.plan("pro", 3100)
    billing.plan("trial", 3100, trial_days=7)
    billing.start("pro", tenant="t1")
    billing.start("trial", tenant="t2")
    report = billing.run(T0)
    assert (report["invoiced"], report["finalized"]) == (1, 1)
    assert [i.state.tenant_id for i in billing.invoices()] == ["t1"]
    report = billing.run(T0 + timedelta(days=7))
    assert (report["trials_ended"], report["invoiced"]) == (1, 1)
    second = billing.invoices()[-1]
    assert (second.state.tenant_id, second.state.finalized_at) == ("t2", T0 + timedelta(days=7))


def test_a_run_bills_in_arrears_at_the_period_end(billing: Billing) -> None:
    billing.plan("pro", 3100, base_fee_timing="in_arrears")
    billing.start("pro")
    assert billing.run(T0)["invoiced"] == 0
    assert billing.run(FEB - timedelta(seconds=1))["invoiced"] == 0
    report = billing.run(FEB)
    assert (report["renewed"], report["invoiced"]) == (1, 1)
    [january] = billing.invoices()
    assert january.state.period == Period(start=T0, end=FEB)
    assert january.state.finalized_at == FEB


def test_a_run_makes_the_final_invoice_of_a_cancel_at_period_end(billing: Billing) -> None:
    billing.plan("pro", 3100, base_fee_timing="in_arrears")
    sub = billing.start("pro")
    billing.do("cancel_subscription", subscription_id=str(sub), at_period_end=True)
    report = billing.run(MAR)
    assert (report["canceled"], report["renewed"], report["invoiced"]) == (1, 0, 1)
    [final] = billing.invoices()
    assert final.state.origin == "final" and lines(final) == [("base_fee", 1, 3100)]


def test_a_run_after_a_renewal_and_a_cancel_bills_both_periods(billing: Billing) -> None:
    billing.plan("pro", 3100, base_fee_timing="in_arrears")
    sub = billing.start("pro")
    billing.clock.set(FEB)
    billing.do("renew_subscription", subscription_id=str(sub))
    billing.clock.set(FEB + timedelta(days=7))  # 7 of 28 days of February
    billing.do("cancel_subscription", subscription_id=str(sub))
    billing.run(MAR)
    assert [(i.state.origin, lines(i)) for i in billing.invoices()] == [
        ("subscription", [("base_fee", 1, 3100)]),
        ("final", [("base_fee", 1, 775)]),
    ]


# --- timezones and month ends ----------------------------------------------------------------


def test_new_york_periods_keep_local_midnight_across_march_and_november() -> None:
    start = datetime(2026, 2, 1, tzinfo=NY).astimezone(UTC)
    billing = Billing(start)
    try:
        billing.profile(timezone="America/New_York")
        billing.plan("pro", 3000)
        billing.start("pro")
        billing.run(datetime(2026, 12, 2, tzinfo=UTC))
        periods = [i.state.lines[0].period for i in billing.invoices()]
        local = [(p.start.astimezone(NY), p.end.astimezone(NY)) for p in periods if p]
        assert len(local) == 11  # February to December
        for begin, end in local:
            assert (begin.hour, begin.minute, begin.day) == (0, 0, 1)
            assert (end.hour, end.minute, end.day) == (0, 0, 1)
        march, november = periods[1], periods[9]
        assert march is not None and november is not None
        assert march.duration == timedelta(days=31, hours=-1)  # spring forward
        assert november.duration == timedelta(days=30, hours=1)  # fall back
        march_local = local[1]
        assert march_local[0].utcoffset() == timedelta(hours=-5)
        assert march_local[1].utcoffset() == timedelta(hours=-4)
    finally:
        billing.close()


def test_renewals_in_a_timezone_follow_its_wall_clock() -> None:
    plan = terms(price=3000)
    start = datetime(2026, 10, 31, tzinfo=NY).astimezone(UTC)
    sub = Subscription.start(uuid4(), "acme", "t1", plan, cause(start), timezone="America/New_York")
    ends = []
    for _ in range(5):
        sub.renew(cause(sub.state.current_period.end))
        ends.append(sub.state.current_period.start.astimezone(NY))
    assert [(e.month, e.day, e.hour) for e in ends] == [
        (11, 30, 0),
        (12, 31, 0),
        (1, 31, 0),
        (2, 28, 0),
        (3, 31, 0),
    ]


def test_month_end_periods_come_back_to_the_31st() -> None:
    sub = Subscription.start(uuid4(), "acme", "t1", terms(price=3000), cause(utc(2026, 1, 31)))
    starts = [sub.state.current_period.start]
    for _ in range(4):
        sub.renew(cause(sub.state.current_period.end))
        starts.append(sub.state.current_period.start)
    assert [(s.month, s.day) for s in starts] == [(1, 31), (2, 28), (3, 31), (4, 30), (5, 31)]


def test_a_yearly_period_from_february_29_ends_on_february_28() -> None:
    yearly = terms(price=30000, interval="year")
    sub = Subscription.start(uuid4(), "acme", "t1", yearly, cause(utc(2028, 2, 29)))
    assert sub.state.current_period.end == utc(2029, 2, 28)
    sub.renew(cause(utc(2029, 2, 28)))
    sub.renew(cause(utc(2030, 2, 28)))
    sub.renew(cause(utc(2031, 2, 28)))
    assert sub.state.current_period == Period(start=utc(2031, 2, 28), end=utc(2032, 2, 29))
