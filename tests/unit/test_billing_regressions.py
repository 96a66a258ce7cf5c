"""Regressions found by the billing engine's tests, each fixed: trial cancels, pauses,
upgrades before the in-advance invoice, trials on the wall clock, grace periods within a
run, seats without a seat price; and plan changes may not switch the base fee timing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.invoice import InvoiceStatus
from tests.factories import T0
from tests.unit.test_billing_examples import Billing, utc

NY = ZoneInfo("America/New_York")


@pytest.fixture
def billing() -> Iterator[Billing]:
    driver = Billing()
    try:
        yield driver
    finally:
        driver.close()


def test_a_cancel_scheduled_during_a_trial_ends_it_at_the_trial_end_unbilled(
    billing: Billing,
) -> None:
    billing.plan("pro", 3000, trial_days=14)
    sub = billing.start("pro")
    billing.do("cancel_subscription", subscription_id=str(sub), at_period_end=True)
    billing.run(T0 + timedelta(days=60))
    assert billing.invoices() == []
    assert billing.subscription(sub).state.ended_at == T0 + timedelta(days=14)


def test_a_cancel_while_paused_credits_the_paused_time_too(billing: Billing) -> None:
    billing.plan("pro", 3100)
    sub = billing.start("pro")
    billing.run(utc(2026, 1, 11))
    billing.do("pause_subscription", subscription_id=str(sub))
    billing.run(utc(2026, 1, 21))
    reply = billing.do(
        "cancel_subscription", subscription_id=str(sub), proration="create_prorations"
    )
    [credit] = reply["pending_prorations"]
    assert credit["amount"]["amount"] == -2100  # Jan 11 (the pause) to Feb 1


def test_a_pause_of_no_time_keeps_the_month_end_anchor() -> None:
    billing = Billing(utc(2026, 1, 31))
    try:
        billing.plan("pro", 3000)
        sub = billing.start("pro")
        billing.run(utc(2026, 2, 10))
        billing.do("pause_subscription", subscription_id=str(sub))
        billing.do("resume_subscription", subscription_id=str(sub))
        billing.run(utc(2026, 5, 1))
        starts = [i.state.lines[0].period.start.date().isoformat() for i in billing.invoices()]
        assert starts == ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]
    finally:
        billing.close()


def test_an_upgrade_before_the_periods_invoice_is_not_charged_twice(billing: Billing) -> None:
    billing.plan("pro", 3100)
    billing.plan("big", 6200)
    sub = billing.start("pro")
    billing.clock.set(utc(2026, 1, 16))  # the system clock moved on; no run yet
    billing.do("change_plan", subscription_id=str(sub), plan_key="big")
    billing.run(utc(2026, 1, 16))
    [first] = billing.invoices()
    # 15 days on pro + 16 days on big = 1500 + 3200, not the new fee and a proration too
    assert first.totals.total.amount == 1500 + 3200
    assert first.state.finalized_at == utc(2026, 1, 16)  # stamped when the change made it due


def test_a_trial_in_new_york_ends_at_local_midnight() -> None:
    billing = Billing(datetime(2026, 3, 1, tzinfo=NY).astimezone(ZoneInfo("UTC")))
    try:
        billing.profile(timezone="America/New_York")
        billing.plan("pro", 3000, trial_days=14)
        sub = billing.start("pro")
        trial_end = billing.subscription(sub).state.trial_end
        assert trial_end is not None
        assert trial_end.astimezone(NY) == datetime(2026, 3, 15, tzinfo=NY)
    finally:
        billing.close()


def test_a_draft_whose_grace_period_ends_within_the_run_is_finalized_by_it(
    billing: Billing,
) -> None:
    billing.do("configure_billing", grace_period_hours=24)
    billing.plan("pro", 3100)
    billing.start("pro")
    billing.run(T0 + timedelta(days=3))
    [opening] = billing.invoices()
    assert opening.status is InvoiceStatus.OPEN
    assert opening.state.finalized_at == T0 + timedelta(hours=24)


def test_seats_of_a_plan_without_a_seat_price_are_refused_not_a_crash(billing: Billing) -> None:
    billing.plan("pro", 3100)
    sub = billing.start("pro")
    billing.run(T0 + timedelta(days=1))
    reply = billing.send("change_seats", subscription_id=str(sub), quantity=2)
    assert reply["ok"] or reply["error"]["details"][0]["field"] == "quantity"


@pytest.mark.parametrize("timing", ["now", "period_end"])
def test_a_plan_change_may_not_switch_the_base_fee_timing(billing: Billing, timing: str) -> None:
    billing.plan("adv", 3100)
    billing.plan("arr", 3100, base_fee_timing="in_arrears")
    sub = billing.start("adv")
    reply = billing.send("change_plan", subscription_id=str(sub), plan_key="arr", timing=timing)
    assert reply["error"]["code"] == "invalid_value"
    assert reply["error"]["details"][0]["field"] == "plan_key"


def test_a_repeating_coupon_counts_periods_not_proration_invoices() -> None:
    # Stripe: "repeating" applies for a number of months (billing periods), whatever number
    # of invoices they hold: https://docs.stripe.com/billing/subscriptions/coupons
    billing = Billing(utc(2026, 4, 1))
    try:
        billing.do(
            "create_coupon", code="q3", percent_off=10, duration="repeating", duration_in_periods=3
        )
        billing.plan("pro", 1000)
        billing.plan("big", 2000)
        billing.plan("huge", 3000)
        sub = billing.start("pro", coupon="q3")
        billing.run(utc(2026, 4, 11))
        for plan in ("big", "huge"):
            billing.do(
                "change_plan", subscription_id=str(sub), plan_key=plan, proration="always_invoice"
            )
        billing.run(utc(2026, 7, 2))
        renewals = [i for i in billing.invoices() if i.state.origin == "subscription"]
        discounted = [i.totals.discount_total.amount > 0 for i in renewals]
        assert discounted == [True, True, True, False]  # April, May, June; not July
        prorations = [i for i in billing.invoices() if i.state.origin == "proration"]
        assert all(i.totals.discount_total.amount > 0 for i in prorations)
    finally:
        billing.close()


def test_a_forever_coupon_discounts_the_credit_of_a_downgrade_too() -> None:
    # Issue 8's rule: discounts apply to proration lines as to the lines they replace. Paid
    # 10.00 for April (20.00 at 50 %); half of it unused is 5.00 back, half of April on lite
    # at 50 % is 2.50 due: a credit of 2.50
    billing = Billing(utc(2026, 4, 1))
    try:
        billing.do("create_coupon", code="half", percent_off=50, duration="forever")
        billing.plan("pro", 2000)
        billing.plan("lite", 1000)
        sub = billing.start("pro", coupon="half")
        billing.run(utc(2026, 4, 16))
        reply = billing.do(
            "change_plan", subscription_id=str(sub), plan_key="lite", proration="always_invoice"
        )
        assert reply["invoice"]["total"]["amount"] == -250
        assert reply["invoice"]["amount_due"]["amount"] == 0
        assert reply["invoice"]["balance_created"]["amount"] == 250
    finally:
        billing.close()
