"""Property (issue 10): for any sequence of usage, some of it up to 34 days late, billed by
billing runs along the way, what the invoices billed for each period (its usage lines plus the
adjustments of later invoices) equals a from-scratch rating of all the period's usage."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.billing.runs import run_billing
from adapters.bootstrap import System, bootstrap
from adapters.settings import Settings
from commands.usage.record_usage import UsageEventIn
from domain.clock import SettableClock
from domain.invoice import Invoice, LineKind
from tests.factories import T0, ok

APP = "acme"
UNIT = 100  # one unit of usage costs $1.00
PLAN = {
    "app_id": APP,
    "plan_key": "meter",
    "name": "Metered",
    "base_price": {"amount": 0, "currency": "USD"},
    "base_fee_timing": "in_arrears",
    "features": [
        {
            "key": "api",
            "kind": "metered",
            "enforcement": "soft",
            "overage": {"model": "per_unit", "unit_price": {"amount": UNIT, "currency": "USD"}},
        }
    ],
}

usage_steps = st.lists(
    st.tuples(st.integers(0, 88), st.integers(1, 20), st.integers(0, 34)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=usage_steps)
def test_billed_plus_adjustments_equals_a_recompute_from_scratch(
    steps: list[tuple[int, int, int]],
) -> None:
    used, billed = history(PLAN, steps, with_true_up=False)
    assert billed == {m: q * UNIT for m, q in used.items() if q}


def history(
    plan: dict[str, Any], steps: list[tuple[int, int, int]], *, with_true_up: bool
) -> tuple[dict[str, int], dict[str, int]]:
    """Run the usage (day, quantity, days late) with billing runs along the way, then bill
    every period; answer the units used and the amounts billed, per month."""
    with TemporaryDirectory() as folder:
        clock = SettableClock(T0)
        url = f"sqlite:///{Path(folder) / 'events.db'}"
        system = bootstrap(Settings(database_url=url), clock, deliver_in_process=False)
        try:
            ok(system.dispatch("define_plan", plan))
            start = {"app_id": APP, "tenant_id": "t1", "plan_key": "meter"}
            ok(system.dispatch("start_subscription", start))
            used: dict[str, int] = defaultdict(int)  # period start -> units, by the usage's time
            for index, (day, quantity, late) in enumerate(sorted(steps)):
                now = T0 + timedelta(days=day, hours=12)
                bill(system, clock, now)
                at = max(T0, now - timedelta(days=late))
                event = UsageEventIn(
                    idempotency_key=f"u{index}",
                    tenant_id="t1",
                    feature_key="api",
                    quantity=quantity,
                    timestamp=at,
                )
                assert system.usage.record(APP, [event])["accepted"] == 1
                used[month_of(at)] += quantity
            bill(system, clock, T0 + timedelta(days=200))  # every period billed and corrected
            return used, billed_per_period(system, with_true_up)
        finally:
            system.close()


def bill(system: System, clock: SettableClock, until: datetime) -> None:
    system.sync()
    run_billing(system, system.index.ids, APP, clock, until)


def month_of(instant: datetime) -> str:
    return instant.strftime("%Y-%m")


def billed_per_period(system: System, with_true_up: bool = False) -> dict[str, int]:
    """Usage lines and adjustments of every invoice (and true-ups), by the period they bill,
    with every credit note taken off the period of the lines it credits (non-zero)."""
    kinds = {LineKind.USAGE, LineKind.ADJUSTMENT}
    if with_true_up:
        kinds.add(LineKind.COMMITMENT_TRUE_UP)
    totals: dict[str, int] = defaultdict(int)
    for invoice_id in system.index.ids(APP, "invoice"):
        invoice = system.aggregate(invoice_id)
        assert isinstance(invoice, Invoice)
        for line in invoice.state.lines:
            if line.kind in kinds and line.period is not None:
                totals[month_of(line.period.start)] += line.amount.amount
                totals[month_of(line.period.start)] -= invoice.state.credited_amounts.get(
                    line.line_id, 0
                )
    return {period: amount for period, amount in totals.items() if amount}


MINIMUM = 1000  # $10 a month


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=usage_steps)
def test_with_a_minimum_spend_each_period_owes_the_larger_of_it_and_its_usage(
    steps: list[tuple[int, int, int]],
) -> None:
    plan = {**PLAN, "minimum_spend": {"amount": MINIMUM, "currency": "USD"}}
    used, billed = history(plan, steps, with_true_up=True)
    months = [f"2026-{m:02d}" for m in range(1, 7)]  # the periods billed by day 200
    assert billed == {m: max(MINIMUM, used.get(m, 0) * UNIT) for m in months}
