"""Issue 10's billing on SQLite and real PostgreSQL: late usage corrected on the next invoice,
a minimum spend's true-up, and progressive billing's interim invoice deducted at period end."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from adapters.billing.runs import run_billing
from adapters.bootstrap import System
from commands.usage.record_usage import UsageEventIn
from domain.clock import SettableClock
from domain.invoice import Invoice
from tests.factories import T0, ok

APP = "acme"
PER_UNIT = {"model": "per_unit", "unit_price": {"amount": 100, "currency": "USD"}}


def start(system: System, **terms: Any) -> None:
    feature = {"key": "api", "kind": "metered", "enforcement": "soft", "overage": PER_UNIT}
    plan = {
        "app_id": APP,
        "plan_key": "p",
        "name": "P",
        "base_price": {"amount": 1000, "currency": "USD"},
        "base_fee_timing": "in_arrears",
        "features": [feature],
        **terms,
    }
    ok(system.dispatch("define_plan", plan))
    ok(system.dispatch("start_subscription", {"app_id": APP, "tenant_id": "t1", "plan_key": "p"}))


def use(system: System, key: str, quantity: int, at: datetime | None = None) -> None:
    event = UsageEventIn(
        idempotency_key=key, tenant_id="t1", feature_key="api", quantity=quantity, timestamp=at
    )
    assert system.usage.record(APP, [event])["accepted"] == 1
    system.sync()


def bill(system: System, clock: SettableClock, days: int) -> None:
    clock.set(T0 + timedelta(days=days))
    system.sync()
    run_billing(system, system.index.ids, APP, clock, clock.now())


def lines(system: System) -> list[list[tuple[str, int]]]:
    invoices = [system.aggregate(i) for i in system.index.ids(APP, "invoice")]
    ordered = sorted((i for i in invoices if isinstance(i, Invoice)), key=_order)
    return [[(line.kind.value, line.amount.amount) for line in i.state.lines] for i in ordered]


def _order(invoice: Invoice) -> tuple[int, str]:
    return invoice.state.number or 0, str(invoice.id)


def test_late_usage_is_corrected_on_the_next_invoice(system: System, clock: SettableClock) -> None:
    start(system)
    clock.set(T0 + timedelta(days=10))
    use(system, "a", 10)
    bill(system, clock, 31)
    clock.set(T0 + timedelta(days=33))
    use(system, "late", 4, at=T0 + timedelta(days=19))
    bill(system, clock, 59)
    assert lines(system) == [
        [("base_fee", 1000), ("usage", 1000)],
        [("base_fee", 1000), ("usage", 0), ("adjustment", 400)],
    ]


def test_a_minimum_spend_bills_the_shortfall(system: System, clock: SettableClock) -> None:
    start(system, minimum_spend={"amount": 5000, "currency": "USD"})
    clock.set(T0 + timedelta(days=10))
    use(system, "a", 10)
    bill(system, clock, 31)
    assert lines(system) == [[("base_fee", 1000), ("usage", 1000), ("commitment_true_up", 3000)]]


def test_an_interim_invoice_is_deducted_at_the_period_end(
    system: System, clock: SettableClock
) -> None:
    start(system, progressive_thresholds=[{"amount": 2000, "currency": "USD"}])
    clock.set(T0 + timedelta(days=5))
    use(system, "a", 25)
    bill(system, clock, 5)  # by the clock, as well as on ingest
    bill(system, clock, 31)
    assert lines(system) == [
        [("usage", 2500)],
        [("base_fee", 1000), ("usage", 2500), ("adjustment", -2500)],
    ]
