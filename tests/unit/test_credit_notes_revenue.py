"""Credit notes in the revenue read model: recognized revenue goes down over the credited
line's service period, deferred revenue loses what was not yet earned, and a credit note
counts as no invoice (embedded system, read models fed on sync)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.bootstrap import System
from domain.clock import SettableClock
from tests.factories import T0, embedded_system, ok

APP = "acme"
QUARTER = {"start": "2026-01-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}  # 90 days


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


def quarter_invoice(system: System, amount: int = 12_000) -> tuple[str, str]:
    line = {
        "kind": "base_fee",
        "description": "3 months",
        "quantity": 1,
        "unit_amount": {"amount": amount, "currency": "USD"},
        "period": QUARTER,
    }
    drafted = ok(
        system.dispatch(
            "draft_invoice",
            {"app_id": APP, "tenant_id": "t1", "currency": "USD", "lines": [line]},
        )
    )
    ok(system.dispatch("finalize_invoice", {"app_id": APP, "invoice_id": drafted["invoice_id"]}))
    return str(drafted["invoice_id"]), str(drafted["lines"][0]["line_id"])


def credit(system: System, invoice_id: str, method: str, **extra: Any) -> dict[str, Any]:
    body = {"app_id": APP, "invoice_id": invoice_id, "reason": "r", "method": method, **extra}
    return ok(system.dispatch("issue_credit_note", body))


def monthly(system: System) -> list[tuple[str, int, int]]:
    system.sync()
    rows = system.query(
        "recognized_revenue", app_id=APP, granularity="month", as_of="2026-12-31T00:00:00Z"
    )
    return [(row["period"], row["amount"], row["invoices"]) for row in rows]


def deferred(system: System, at: str) -> int:
    system.sync()
    return int(system.query("deferred_revenue", app_id=APP, at=at)["deferred"].get("USD", 0))


def test_stripe_pre_payment_credit_note_is_spread_over_the_line_period(system: System) -> None:
    """https://docs.stripe.com/revenue-recognition/examples/credit-notes ("Credit note before
    a payment"): a 3-month subscription from January 1 costs 120 USD; a pre-payment credit
    note of 30 USD reduces it to 90 USD, recognized per day over the three months."""
    invoice_id, line_id = quarter_invoice(system)
    assert monthly(system) == [("2026-01", 4_133, 1), ("2026-02", 3_734, 1), ("2026-03", 4_133, 1)]
    amount = {"amount": 3_000, "currency": "USD"}
    credit(system, invoice_id, "reduce_amount_due", lines=[{"line_id": line_id, "amount": amount}])
    # 9,000 over 90 days is 100 a day: 31, 28 and 31 days
    assert monthly(system) == [("2026-01", 3_100, 1), ("2026-02", 2_800, 1), ("2026-03", 3_100, 1)]
    assert deferred(system, "2026-01-31T12:00:00Z") == 9_000 - 3_100
    assert deferred(system, "2026-04-01T12:00:00Z") == 0


def test_a_full_credit_after_payment_takes_the_line_out_and_nothing_stays_deferred(
    system: System, clock: SettableClock
) -> None:
    invoice_id, _ = quarter_invoice(system)
    ok(system.dispatch("pay_invoice", {"app_id": APP, "invoice_id": invoice_id}))
    assert deferred(system, "2026-02-15T12:00:00Z") == 12_000 - 6_133  # 46 days earned
    clock.set(datetime(2026, 2, 15, 12, tzinfo=UTC))
    note = credit(system, invoice_id, "credit_balance")
    assert note["total"]["amount"] == 12_000
    # every service day back to zero; the invoice still counts once, the note not at all
    assert monthly(system) == [("2026-01", 0, 1), ("2026-02", 0, 1), ("2026-03", 0, 1)]
    assert deferred(system, "2026-02-15T13:00:00Z") == 0
    assert deferred(system, "2026-03-15T00:00:00Z") == 0
    assert deferred(system, "2026-01-31T00:00:00Z") == 12_000 - 4_133  # the past stays


def test_the_credited_discount_share_is_not_taken_off_revenue_twice(system: System) -> None:
    lines = [
        {
            "kind": "base_fee",
            "description": "fee",
            "quantity": 1,
            "unit_amount": {"amount": 9_000, "currency": "USD"},
            "period": QUARTER,
        },
        {
            "kind": "discount",
            "description": "10% off",
            "quantity": 1,
            "unit_amount": {"amount": -900, "currency": "USD"},
        },
    ]
    drafted = ok(
        system.dispatch(
            "draft_invoice",
            {"app_id": APP, "tenant_id": "t1", "currency": "USD", "lines": lines},
        )
    )
    invoice_id = str(drafted["invoice_id"])
    ok(system.dispatch("finalize_invoice", {"app_id": APP, "invoice_id": invoice_id}))
    assert sum(amount for _, amount, _ in monthly(system)) == 8_100
    fee = drafted["lines"][0]["line_id"]
    amount = {"amount": 4_500, "currency": "USD"}
    note = credit(
        system, invoice_id, "reduce_amount_due", lines=[{"line_id": fee, "amount": amount}]
    )
    assert note["total"]["amount"] == 4_500 - 450 and note["discount_total"]["amount"] == 450
    assert sum(amount for _, amount, _ in monthly(system)) == 8_100 - 4_050
