"""Prepaid credit grants end to end on SQLite and real PostgreSQL: a billing run's invoice
draws two grants in order, before the credit balance; expiry by the clock in billing runs;
void; two systems finalizing invoices of one tenant at once never overdraw; the prepaid
balance fires credit_balance alerts; the read model rebuilt from the log equals the live one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from adapters.billing.runs import run_billing
from adapters.bootstrap import System, bootstrap
from adapters.readmodels.replay import replay
from domain.balance import CreditBalance
from domain.clock import SettableClock
from domain.credit_grant import TenantCredits, tenant_credits_id
from domain.money import Money
from projections.credits.projector import CreditsProjector
from tests.conftest import StoreSettings
from tests.factories import T0, cause, ok

APP = "acme"
USD = "USD"


def run(system: System, command: str, /, **payload: Any) -> dict[str, Any]:
    return ok(system.dispatch(command, {"app_id": APP, **payload}))


def usd(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": USD}


def grant(system: System, amount: int, priority: int, days: int | None = None) -> str:
    body: dict[str, Any] = {"amount": usd(amount), "priority": priority, "reason": "prepaid"}
    if days is not None:
        body["expires_at"] = (T0 + timedelta(days=days)).isoformat()
    return str(run(system, "grant_credit", tenant_id="t1", **body)["grant_id"])


def credits(system: System) -> dict[str, Any]:
    system.sync()
    found: dict[str, Any] = system.query("credits", app_id=APP, tenant_id="t1")
    return found


def test_a_billing_run_invoice_draws_two_grants_in_order_then_the_balance(
    system: System, clock: SettableClock
) -> None:
    run(
        system,
        "define_plan",
        plan_key="pro",
        name="Pro",
        base_price=usd(1000),
        base_fee_timing="in_advance",
    )
    second = grant(system, 400, 5)
    first = grant(system, 300, 0, days=90)
    opened = CreditBalance.open(
        APP, "t1", Money.of(200, USD), cause(), invoice_id=UUID(int=7), reason="earlier credit"
    )
    system.ledger.save(opened)
    run(system, "start_subscription", tenant_id="t1", plan_key="pro")
    report = run_billing(system, system.index.ids, APP, clock, T0)
    assert (report["invoiced"], report["finalized"]) == (1, 1), report
    [invoice_id] = system.index.ids(APP, "invoice")
    invoice = system.aggregate(invoice_id).state
    assert invoice.credits_applied == Money.of(700, USD)  # the grants first (Stripe's order)
    assert invoice.balance_applied == Money.of(200, USD)  # then the credit balance
    assert invoice.amount_due == Money.of(100, USD)
    ledger = system.aggregate(tenant_credits_id(APP, "t1"))
    assert isinstance(ledger, TenantCredits)
    assert [g.remaining.amount for g in ledger.grants()] == [0, 0]
    view = credits(system)
    drawn = sorted(
        (m["position"], g["grant_id"], m["amount"]["amount"], m["invoice_id"])
        for g in view["grants"]
        for m in g["movements"]
        if m["kind"] == "drawn"
    )
    assert [row[1:] for row in drawn] == [
        (first, -300, str(invoice_id)),
        (second, -400, str(invoice_id)),
    ]
    assert view["balance"] == []
    assert_replay_equals_live(system)


def test_expiry_by_the_clock_void_and_the_balance(system: System, clock: SettableClock) -> None:
    soon = grant(system, 500, 0, days=3)
    later = grant(system, 800, 0, days=10)
    kept = grant(system, 900, 1)
    report = run_billing(system, system.index.ids, APP, clock, T0 + timedelta(days=5))
    assert report["credits_expired"] == 1 and report["errors"] == []
    assert clock.now() == T0 + timedelta(days=5)
    view = credits(system)
    status = {g["grant_id"]: (g["status"], g["remaining"]["amount"]) for g in view["grants"]}
    assert status == {soon: ("expired", 0), later: ("active", 800), kept: ("active", 900)}
    expired = next(g for g in view["grants"] if g["grant_id"] == soon)["movements"][-1]
    assert expired["occurred_at"].startswith("2026-01-04")  # at its expires_at, by the clock
    run(system, "void_credit_grant", tenant_id="t1", grant_id=later, reason="contract ended")
    report = run_billing(system, system.index.ids, APP, clock, T0 + timedelta(days=20))
    assert report["credits_expired"] == 0  # voided: nothing left to lapse
    view = credits(system)
    assert view["balance"] == [usd(900)]
    for found in view["grants"]:
        assert (
            sum(m["amount"]["amount"] for m in found["movements"]) == found["remaining"]["amount"]
        )
    refused = system.dispatch(
        "void_credit_grant", {"app_id": APP, "tenant_id": "t1", "grant_id": later}
    )
    assert not refused["ok"] and refused["error"]["details"][0]["field"] == "grant_id"
    assert_replay_equals_live(system)


@pytest.fixture
def twin(store_settings: StoreSettings, clock: SettableClock) -> Iterator[System]:
    """A second system on the same store (another process, as far as the ledger knows)."""
    settings, schema = store_settings
    built = bootstrap(settings, clock, schema=schema)
    try:
        yield built
    finally:
        built.close()


def test_concurrent_finalizes_never_overdraw(system: System, twin: System) -> None:
    grant(system, 1000, 0)
    line = {
        "kind": "base_fee",
        "description": "Fee",
        "quantity": 1,
        "unit_amount": usd(800),
    }
    drafts = [
        str(run(system, "draft_invoice", tenant_id="t1", currency=USD, lines=[line])["invoice_id"])
        for _ in range(4)
    ]
    replies: list[dict[str, Any]] = []
    start = threading.Barrier(4)

    def finalize(on: System, invoice_id: str) -> None:
        start.wait()
        replies.append(on.dispatch("finalize_invoice", {"app_id": APP, "invoice_id": invoice_id}))

    threads = [
        threading.Thread(target=finalize, args=(on, d))
        for on, d in zip([system, twin, system, twin], drafts, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(reply["ok"] for reply in replies), replies
    applied = sorted(reply["result"]["credits_applied"]["amount"] for reply in replies)
    assert sum(applied) == 1000 and applied[-1] == 800, applied
    due = sum(reply["result"]["amount_due"]["amount"] for reply in replies)
    assert due == 4 * 800 - 1000
    assert credits(system)["grants"][0]["remaining"] == usd(0)


def test_the_prepaid_balance_fires_credit_balance_alerts(system: System) -> None:
    run(
        system,
        "create_alert",
        tenant_id="t1",
        kind="credit_balance",
        thresholds=[{"amount": usd(500)}],
    )
    kept = grant(system, 2000, 0)
    line = {"kind": "base_fee", "description": "Fee", "quantity": 1, "unit_amount": usd(1200)}
    for _ in range(2):
        draft = run(system, "draft_invoice", tenant_id="t1", currency=USD, lines=[line])
        run(system, "finalize_invoice", invoice_id=draft["invoice_id"])  # 800 left, then 0
    system.sync()
    [alert] = system.query("alerts", app_id=APP)
    assert [(t["value"], t["currency"]) for t in alert["triggered"]] == [(0, USD)]
    grant(system, 1000, 0)  # above the threshold again: re-armed
    run(system, "void_credit_grant", tenant_id="t1", grant_id=kept)  # depleted: no change
    system.sync()
    assert len(system.query("alerts", app_id=APP)[0]["triggered"]) == 1
    draft = run(system, "draft_invoice", tenant_id="t1", currency=USD, lines=[line])
    run(system, "finalize_invoice", invoice_id=draft["invoice_id"])
    system.sync()
    values = [t["value"] for t in system.query("alerts", app_id=APP)[0]["triggered"]]
    assert values == [0, 0]


def assert_replay_equals_live(system: System) -> None:
    live = credits(system)
    replay(system.views, system.ledger.recorder, CreditsProjector(), batch=2)
    assert credits(system) == live
