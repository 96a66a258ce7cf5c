"""Progressive billing: crossing a spend threshold mid-period issues an interim invoice at once
(on ingest, and by the clock in billing runs); the period's invoice deducts what the interim
invoices billed.

Worked example (Stripe, "Billing thresholds":
https://docs.stripe.com/billing/subscriptions/usage-based/thresholds — a threshold of $50 on
metered usage: "Stripe generates an invoice as soon as the threshold is reached"; the invoice at
the end of the period bills the rest): $1 per call, thresholds $50 and $100; 60 calls → an
interim invoice of $60; 60 more → a second interim invoice of $60; 10 more, then the period
ends: the period's invoice bills 130 calls ($130) less the $120 already billed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from adapters.bootstrap import System
from domain.clock import SettableClock
from tests.factories import T0
from tests.unit.http.support import Api, assert_error

PLAN = {
    "plan_key": "prog",
    "name": "Progressive",
    "base_price": {"amount": 2000, "currency": "USD"},
    "base_fee_timing": "in_arrears",
    "progressive_thresholds": [
        {"amount": 5000, "currency": "USD"},
        {"amount": 10000, "currency": "USD"},
    ],
    "features": [
        {
            "key": "calls",
            "kind": "metered",
            "enforcement": "soft",
            "overage": {"model": "per_unit", "unit_price": {"amount": 100, "currency": "USD"}},
        }
    ],
}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def use(acme: Api, system: System, calls: int, key: str) -> None:
    event = {"tenant_id": "t1", "feature_key": "calls", "quantity": calls, "idempotency_key": key}
    assert ok(acme.call("POST", "/v1/usage", json=event))["accepted"] == 1
    assert system.progressive is not None
    system.progressive.drain()  # the check after the commit ran (off the request path)


def invoices(acme: Api) -> list[dict[str, Any]]:
    listed = ok(acme.call("GET", "/v1/invoices?tenant_id=t1"))["invoices"]
    return sorted(listed, key=lambda invoice: invoice["number"] or 0)


def kinds(invoice: dict[str, Any]) -> list[tuple[str, int]]:
    return [(line["kind"], line["amount"]["amount"]) for line in invoice["lines"]]


def start(acme: Api, clock: SettableClock) -> None:
    ok(acme.call("POST", "/v1/plans", json=PLAN), 201)
    ok(acme.call("POST", "/v1/subscriptions", json={"tenant_id": "t1", "plan_key": "prog"}), 201)
    clock.set(T0 + timedelta(days=3))


def test_crossing_thresholds_issues_interim_invoices_deducted_at_period_end(
    acme: Api, system: System, clock: SettableClock
) -> None:
    start(acme, clock)
    use(acme, system, 40, "a")
    assert invoices(acme) == []  # $40: below the first threshold
    use(acme, system, 20, "b")
    [first] = invoices(acme)
    assert first["origin"] == "interim" and kinds(first) == [("usage", 6000)]
    use(acme, system, 60, "c")
    second = invoices(acme)[-1]
    assert kinds(second) == [("usage", 12000), ("adjustment", -6000)]
    use(acme, system, 10, "d")
    assert len(invoices(acme)) == 2  # no third threshold
    clock.set(T0 + timedelta(days=31))
    ok(acme.call("POST", "/v1/billing-runs", json={"until": clock.now().isoformat()}))
    final = invoices(acme)[-1]
    assert kinds(final) == [("base_fee", 2000), ("usage", 13000), ("adjustment", -12000)]
    assert final["total"]["amount"] == 3000
    billed = sum(invoice["total"]["amount"] for invoice in invoices(acme))
    assert billed == 2000 + 13000  # nothing billed twice


def test_a_billing_run_checks_the_thresholds_by_the_clock(
    acme: Api, system: System, clock: SettableClock
) -> None:
    start(acme, clock)
    assert system.progressive is not None
    system.usage.after_usage.clear()  # as if the check on ingest was lost
    event = {"tenant_id": "t1", "feature_key": "calls", "quantity": 70, "idempotency_key": "x"}
    ok(acme.call("POST", "/v1/usage", json=event))
    system.sync()
    assert invoices(acme) == []
    report = ok(acme.call("POST", "/v1/billing-runs", json={"until": clock.now().isoformat()}))
    assert report["interim_invoiced"] == 1
    [interim] = invoices(acme)
    assert kinds(interim) == [("usage", 7000)]
    again = ok(acme.call("POST", "/v1/billing-runs", json={"until": clock.now().isoformat()}))
    assert again["interim_invoiced"] == 0  # the same threshold never twice


def test_thresholds_must_ascend_in_the_plans_currency(acme: Api) -> None:
    descending = {**PLAN, "progressive_thresholds": [{"amount": 5000, "currency": "USD"}] * 2}
    response = acme.call("POST", "/v1/plans", json=descending)
    assert_error(response, 422, "validation_error")
    assert "progressive_thresholds.1" in response.text
    euro = {**PLAN, "progressive_thresholds": [{"amount": 5000, "currency": "EUR"}]}
    assert "progressive_thresholds.0" in acme.call("POST", "/v1/plans", json=euro).text


def test_a_minimum_spend_counts_the_usage_interim_invoices_billed(
    acme: Api, system: System, clock: SettableClock
) -> None:
    """Found in review: the true-up once took the interim deduction for missing spend."""
    plan = {**PLAN, "minimum_spend": {"amount": 10000, "currency": "USD"}}
    ok(acme.call("POST", "/v1/plans", json=plan), 201)
    ok(acme.call("POST", "/v1/subscriptions", json={"tenant_id": "t1", "plan_key": "prog"}), 201)
    clock.set(T0 + timedelta(days=3))
    use(acme, system, 130, "a")  # $130 of usage: an interim invoice
    clock.set(T0 + timedelta(days=31))
    ok(acme.call("POST", "/v1/billing-runs", json={"until": clock.now().isoformat()}))
    final = invoices(acme)[-1]
    assert all(kind != "commitment_true_up" for kind, _ in kinds(final))
    assert sum(invoice["total"]["amount"] for invoice in invoices(acme)) == 2000 + 13000
