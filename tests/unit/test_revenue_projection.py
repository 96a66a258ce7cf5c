"""Revenue read model through the embedded system (SQLite, events fed on sync)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.bootstrap import System
from adapters.eventstore.envelopes import read_envelopes
from adapters.readmodels.sql_store import ViewStore
from domain.clock import SettableClock
from domain.errors import InvalidValue
from projections.revenue.projector import RevenueProjector
from projections.revenue.queries import mrr_of
from tests.factories import embedded_system

APP = "acme"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def system(clock: SettableClock) -> Iterator[System]:
    built = embedded_system(clock)
    try:
        yield built
    finally:
        built.close()


def run(system: System, command: str, **payload: Any) -> dict[str, Any]:
    reply = system.dispatch(command, {"app_id": APP, **payload})
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


def plan(
    system: System,
    key: str,
    price: int,
    currency: str = "USD",
    interval: str = "month",
    trial_days: int = 0,
) -> None:
    run(
        system,
        "define_plan",
        plan_key=key,
        name=key.title(),
        base_price={"amount": price, "currency": currency},
        interval=interval,
        trial_days=trial_days,
    )


def start(system: System, tenant: str, plan_key: str) -> str:
    result = run(system, "start_subscription", tenant_id=tenant, plan_key=plan_key)
    return str(result["subscription_id"])


def act(system: System, command: str, subscription_id: str, **payload: Any) -> None:
    run(system, command, subscription_id=subscription_id, **payload)


def revenue(system: System, **params: Any) -> dict[str, Any]:
    system.sync()
    result: dict[str, Any] = system.query("revenue", app_id=APP, **params)
    return result


def metrics(system: System) -> dict[str, Any]:
    system.sync()
    result: dict[str, Any] = system.query("subscription_metrics", app_id=APP)
    return result


def paid_invoice(
    system: System, tenant: str, amount: int, currency: str = "USD", fail: int = 0
) -> str:
    draft = run(
        system,
        "draft_invoice",
        tenant_id=tenant,
        currency=currency,
        lines=[
            {
                "kind": "base_fee",
                "description": "base fee",
                "unit_amount": {"amount": amount, "currency": currency},
            }
        ],
    )
    invoice_id = str(draft["invoice_id"])
    run(system, "finalize_invoice", invoice_id=invoice_id)
    for attempt in range(fail):
        run(system, "fail_invoice_payment", invoice_id=invoice_id, reason=f"declined {attempt}")
    run(system, "pay_invoice", invoice_id=invoice_id)
    return invoice_id


def test_mrr_follows_the_subscription_lifecycle(system: System, clock: SettableClock) -> None:
    plan(system, "basic", 1000, trial_days=14)
    plan(system, "pro", 3000)
    sub = start(system, "t1", "basic")
    assert revenue(system)["mrr"] == {}  # trialing pays nothing yet

    act(system, "end_trial", sub)
    assert revenue(system)["mrr"] == {"USD": 1000}
    assert revenue(system)["arr"] == {"USD": 12000}

    act(system, "change_plan", sub, plan_key="pro")  # upgrade now
    assert revenue(system)["mrr"] == {"USD": 3000}

    act(system, "mark_subscription_past_due", sub)  # still owed: still counted
    assert revenue(system)["mrr"] == {"USD": 3000}
    act(system, "recover_subscription_payment", sub)

    act(system, "pause_subscription", sub)
    assert revenue(system)["mrr"] == {"USD": 0}
    act(system, "resume_subscription", sub)
    assert revenue(system)["mrr"] == {"USD": 3000}

    clock.set(datetime(2026, 2, 10, tzinfo=UTC))
    act(system, "cancel_subscription", sub)
    result = revenue(system)
    assert (result["mrr"], result["arr"]) == ({"USD": 0}, {"USD": 0})
    assert metrics(system)["churned_by_month"] == [
        {"month": "2026-02", "subscriptions": 1, "lost_mrr": {"USD": 3000}}
    ]


def test_mrr_and_arr_over_time_per_month_and_day(system: System, clock: SettableClock) -> None:
    plan(system, "basic", 1000)
    plan(system, "pro", 3000)
    plan(system, "euro", 500, currency="EUR")
    first = start(system, "t1", "basic")  # Jan 1: 1,000 a month
    clock.set(datetime(2026, 1, 20, tzinfo=UTC))
    start(system, "t2", "pro")  # Jan 20: 4,000
    clock.set(datetime(2026, 3, 5, tzinfo=UTC))
    act(system, "cancel_subscription", first)  # Mar 5: 3,000 (February carries January's)
    start(system, "t3", "euro")
    clock.set(datetime(2026, 4, 2, tzinfo=UTC))
    months = revenue(system)["history"]
    assert [(m["period"], m["currency"], m["mrr"]) for m in months] == [
        ("2026-03", "EUR", 500),
        ("2026-04", "EUR", 500),
        ("2026-01", "USD", 4000),
        ("2026-02", "USD", 4000),
        ("2026-03", "USD", 3000),
        ("2026-04", "USD", 3000),
    ]
    assert months[2]["arr"] == 48_000
    days = revenue(
        system,
        granularity="day",
        currency="USD",
        **{"from": "2026-01-19"},
        to="2026-01-21T00:00:00+00:00",
    )["history"]
    assert [(d["period"], d["mrr"]) for d in days] == [("2026-01-19", 1000), ("2026-01-20", 4000)]
    as_of = revenue(system, currency="USD", as_of="2026-02-15T00:00:00+00:00")["history"]
    assert [(m["period"], m["mrr"]) for m in as_of] == [("2026-01", 4000), ("2026-02", 4000)]


def test_scheduled_downgrade_changes_mrr_at_renewal(system: System, clock: SettableClock) -> None:
    plan(system, "pro", 3000)
    plan(system, "basic", 1000)
    sub = start(system, "t1", "pro")
    act(system, "change_plan", sub, plan_key="basic", timing="period_end")
    assert revenue(system)["mrr"] == {"USD": 3000}  # nothing changes until the period ends
    clock.set(datetime(2026, 2, 1, tzinfo=UTC))
    act(system, "renew_subscription", sub)
    assert revenue(system)["mrr"] == {"USD": 1000}
    assert metrics(system)["by_plan_and_status"] == [
        {"plan_key": "basic", "status": "active", "subscriptions": 1}
    ]


def test_yearly_plans_count_a_twelfth_rounded_half_up(system: System) -> None:
    plan(system, "annual", 120_000, interval="year")
    plan(system, "odd", 18, interval="year")  # 1.5 a month
    plan(system, "monthly", 1001)
    start(system, "t1", "annual")
    start(system, "t2", "odd")
    start(system, "t3", "monthly")
    result = revenue(system)
    assert result["arr"] == {"USD": 120_000 + 18 + 12_012}
    # MRR is taken once from the exact annual sum: (120000 + 18 + 12012) / 12 = 11002.5
    assert result["mrr"] == {"USD": 11_003}
    assert mrr_of(18) == 2 and mrr_of(17) == 1 and mrr_of(0) == 0


def test_currencies_are_kept_apart(system: System) -> None:
    plan(system, "us", 1000, "USD")
    plan(system, "eu", 900, "EUR")
    plan(system, "jp", 1200, "JPY")  # zero-decimal: minor units are yen
    start(system, "t1", "us")
    start(system, "t2", "eu")
    start(system, "t3", "eu")
    start(system, "t4", "jp")
    paid_invoice(system, "t1", 1000, "USD")
    paid_invoice(system, "t2", 900, "EUR")

    result = revenue(system)
    assert result["mrr"] == {"EUR": 1800, "JPY": 1200, "USD": 1000}
    assert result["arr"] == {"EUR": 21600, "JPY": 14400, "USD": 12000}
    assert result["recognized"] == [
        {"period": "2026-01", "currency": "EUR", "amount": 900, "invoices": 1},
        {"period": "2026-01", "currency": "USD", "amount": 1000, "invoices": 1},
    ]
    only_eur = revenue(system, currency="EUR")
    assert only_eur["mrr"] == {"EUR": 1800}
    assert [r["currency"] for r in only_eur["recognized"]] == ["EUR"]
    assert only_eur["invoices"] == {"paid": 1, "failed": 0, "failed_attempts": 0}


def test_churn_counts_only_paying_subscriptions_that_end(
    system: System, clock: SettableClock
) -> None:
    plan(system, "trial", 1000, trial_days=30)
    plan(system, "pro", 2000)
    trialing = start(system, "t1", "trial")
    active = start(system, "t2", "pro")
    past_due = start(system, "t3", "pro")
    paused = start(system, "t4", "pro")
    act(system, "mark_subscription_past_due", past_due)
    act(system, "pause_subscription", paused)

    act(system, "cancel_subscription", trialing)  # never paid: not churn
    act(system, "cancel_subscription", paused)  # left MRR when paused: not churn again
    clock.set(datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    act(system, "expire_subscription", past_due)
    clock.set(datetime(2026, 3, 1, tzinfo=UTC))
    act(system, "cancel_subscription", active)

    result = metrics(system)
    assert result["churned_by_month"] == [
        {"month": "2026-01", "subscriptions": 1, "lost_mrr": {"USD": 2000}},
        {"month": "2026-03", "subscriptions": 1, "lost_mrr": {"USD": 2000}},
    ]
    assert result["by_status"] == {"canceled": 3, "expired": 1}
    assert (result["active_total"], result["paying_total"]) == (0, 0)
    assert result["by_plan_and_status"] == []


def test_subscriptions_per_plan_and_status(system: System) -> None:
    plan(system, "basic", 1000, trial_days=7)
    plan(system, "pro", 3000)
    start(system, "t1", "basic")
    start(system, "t2", "basic")
    pro = [start(system, f"p{i}", "pro") for i in range(3)]
    act(system, "pause_subscription", pro[0])
    act(system, "mark_subscription_past_due", pro[1])
    act(system, "cancel_subscription", pro[2])

    result = metrics(system)
    assert result["by_plan_and_status"] == [
        {"plan_key": "basic", "status": "trialing", "subscriptions": 2},
        {"plan_key": "pro", "status": "past_due", "subscriptions": 1},
        {"plan_key": "pro", "status": "paused", "subscriptions": 1},
    ]
    assert result["by_status"] == {"canceled": 1, "past_due": 1, "paused": 1, "trialing": 2}
    assert result["active_total"] == 4
    assert result["paying_total"] == 1
    assert revenue(system)["mrr"] == {"USD": 3000}  # only the past_due one pays


def test_recognized_revenue_per_day_and_month_from_the_finalize_day(
    system: System, clock: SettableClock
) -> None:
    """Lines without a service period are recognized whole on the day the invoice is
    finalized, paid or not (https://docs.stripe.com/revenue-recognition/methodology: "If a
    period isn't set on an invoice line item, the amount on that invoice line item is
    recognized entirely when the invoice is finalized")."""
    paid_invoice(system, "t1", 1000)  # 2026-01-01
    clock.set(datetime(2026, 1, 1, 23, 59, tzinfo=UTC))
    paid_invoice(system, "t2", 250, fail=2)
    clock.set(datetime(2026, 1, 15, 9, 0, tzinfo=UTC))
    paid_invoice(system, "t1", 700)
    clock.set(datetime(2026, 2, 1, 0, 0, tzinfo=UTC))
    paid_invoice(system, "t3", 5000, "EUR", fail=1)

    # paid later than finalized: recognized on the finalize day, not the paid day
    draft = run(
        system,
        "draft_invoice",
        tenant_id="t4",
        currency="USD",
        lines=[
            {
                "kind": "base_fee",
                "description": "x",
                "unit_amount": {"amount": 99, "currency": "USD"},
            }
        ],
    )
    run(system, "finalize_invoice", invoice_id=draft["invoice_id"])
    run(system, "fail_invoice_payment", invoice_id=draft["invoice_id"], reason="declined")
    clock.set(datetime(2026, 2, 3, 12, 0, tzinfo=UTC))
    run(system, "pay_invoice", invoice_id=draft["invoice_id"])

    days = revenue(system, granularity="day")["recognized"]
    assert days == [
        {"period": "2026-01-01", "currency": "USD", "amount": 1250, "invoices": 2},
        {"period": "2026-01-15", "currency": "USD", "amount": 700, "invoices": 1},
        {"period": "2026-02-01", "currency": "EUR", "amount": 5000, "invoices": 1},
        {"period": "2026-02-01", "currency": "USD", "amount": 99, "invoices": 1},
    ]
    months = revenue(system)
    assert months["recognized"] == [
        {"period": "2026-01", "currency": "USD", "amount": 1950, "invoices": 3},
        {"period": "2026-02", "currency": "EUR", "amount": 5000, "invoices": 1},
        {"period": "2026-02", "currency": "USD", "amount": 99, "invoices": 1},
    ]
    # three invoices had failed attempts (one of them twice); five were paid
    assert months["invoices"] == {"paid": 5, "failed": 3, "failed_attempts": 4}
    assert revenue(system, currency="USD")["invoices"] == {
        "paid": 4,
        "failed": 2,
        "failed_attempts": 3,
    }

    # from is rounded down to its period, to is exclusive
    window = revenue(system, granularity="day", to="2026-02-01", **{"from": "2026-01-15T18:00Z"})
    assert [r["period"] for r in window["recognized"]] == ["2026-01-15"]
    feb = revenue(system, from_="2026-02-20", currency="USD")
    assert feb["recognized"] == [
        {"period": "2026-02", "currency": "USD", "amount": 99, "invoices": 1}
    ]


def test_unpaid_invoices_are_recognized_and_voided_ones_are_not(system: System) -> None:
    draft = run(
        system,
        "draft_invoice",
        tenant_id="t1",
        currency="USD",
        lines=[
            {
                "kind": "base_fee",
                "description": "x",
                "unit_amount": {"amount": 7, "currency": "USD"},
            }
        ],
    )
    run(system, "finalize_invoice", invoice_id=draft["invoice_id"])
    assert revenue(system)["recognized"] == [
        {"period": "2026-01", "currency": "USD", "amount": 7, "invoices": 1}
    ]
    run(system, "void_invoice", invoice_id=draft["invoice_id"], reason="mistake")
    result = revenue(system)
    assert result["recognized"] == []
    assert result["deferred"] == {"USD": 0}
    assert result["invoices"] == {"paid": 0, "failed": 0, "failed_attempts": 0}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"granularity": "hour"}, "granularity"),
        ({"granularity": "year"}, "granularity"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"from": "2026-03-01", "to": "2026-02-01"}, "from"),
        ({"to": "not a time"}, "to"),
        ({"app_id": ""}, "app_id"),
        ({"since": "2026-01-01"}, "since"),
        ({"as_of": "yesterday"}, "as_of"),
    ],
)
def test_bad_parameters_name_the_field(system: System, params: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {"app_id": APP, **params}
    with pytest.raises(InvalidValue) as error:
        system.query("revenue", **arguments)
    assert error.value.field == field


def test_other_apps_are_not_counted(system: System) -> None:
    plan(system, "pro", 1000)
    start(system, "t1", "pro")
    paid_invoice(system, "t1", 1000)
    system.sync()
    other = system.query("revenue", app_id="other")
    assert other == {
        "mrr": {},
        "arr": {},
        "history": [],
        "recognized": [],
        "deferred": {},
        "as_of": T0.isoformat(),
        "invoices": {"paid": 0, "failed": 0, "failed_attempts": 0},
    }
    assert system.query("subscription_metrics", app_id="other")["active_total"] == 0


def dump(store: ViewStore) -> dict[str, list[dict[str, Any]]]:
    return {
        table: sorted(
            store.query(f"SELECT * FROM {{{table}}}"), key=lambda row: json.dumps(row, default=str)
        )
        for table in RevenueProjector.TABLES
    }


def test_applying_the_same_events_twice_changes_nothing(
    system: System, clock: SettableClock
) -> None:
    plan(system, "basic", 1000, trial_days=3)
    plan(system, "pro", 2500, "USD", interval="year")
    a = start(system, "t1", "basic")
    b = start(system, "t2", "pro")
    act(system, "end_trial", a)
    act(system, "change_plan", a, plan_key="pro")
    clock.advance(timedelta(days=40))
    act(system, "cancel_subscription", b)
    paid_invoice(system, "t1", 2500, fail=1)
    events = read_envelopes(system.ledger.recorder, 0, 1000)

    store = ViewStore("sqlite", ":memory:")
    projector = RevenueProjector()
    store.ensure(projector)
    try:
        head = store.apply(projector, events)
        once = dump(store)
        assert once["revenue_subscriptions"] and once["revenue_recognition_invoices"]
        assert store.apply(projector, events) == head
        assert store.apply(projector, events[3:]) == head
        assert dump(store) == once
        system.sync()
        assert dump(system.views) == once
    finally:
        store.close()
