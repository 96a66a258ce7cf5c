"""Minimum commitments: a plan's `minimum_spend` per billing period; when the period's fees
and usage fall short, a `commitment_true_up` line bills the difference.

Worked example (Lago, "Minimum commitment": https://docs.getlago.com/guide/plans/commitments —
"if the minimum commitment is $1,000 and the subscription fees and usage for the period
amount to $800, a true-up fee of $200 is added"): base fee $500 in arrears, usage at $0.10
per call, 3,000 calls ($300): $800 against $1,000 → a $200 true-up; 6,000 calls ($600):
$1,100, no true-up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from domain.clock import SettableClock
from tests.factories import T0
from tests.unit.http.support import Api, assert_error

PLAN = {
    "plan_key": "committed",
    "name": "Committed",
    "base_price": {"amount": 50_000, "currency": "USD"},
    "base_fee_timing": "in_arrears",
    "minimum_spend": {"amount": 100_000, "currency": "USD"},
    "features": [
        {
            "key": "calls",
            "kind": "metered",
            "enforcement": "soft",
            "overage": {"model": "per_unit", "unit_price": {"amount": 10, "currency": "USD"}},
        }
    ],
}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def bill(acme: Api, clock: SettableClock, calls: int) -> list[tuple[str, int]]:
    ok(acme.call("POST", "/v1/plans", json=PLAN), 201)
    ok(
        acme.call("POST", "/v1/subscriptions", json={"tenant_id": "t1", "plan_key": "committed"}),
        201,
    )
    clock.set(T0 + timedelta(days=5))
    event = {"tenant_id": "t1", "feature_key": "calls", "quantity": calls, "idempotency_key": "u"}
    ok(acme.call("POST", "/v1/usage", json=event))
    clock.set(T0 + timedelta(days=31))
    ok(acme.call("POST", "/v1/billing-runs", json={"until": clock.now().isoformat()}))
    [invoice] = ok(acme.call("GET", "/v1/invoices?tenant_id=t1"))["invoices"]
    assert invoice["total"]["amount"] == max(100_000, 50_000 + calls * 10)
    return [(line["kind"], line["amount"]["amount"]) for line in invoice["lines"]]


def test_a_shortfall_is_billed_as_a_true_up(acme: Api, clock: SettableClock) -> None:
    lines = bill(acme, clock, 3000)
    assert lines == [("base_fee", 50_000), ("usage", 30_000), ("commitment_true_up", 20_000)]


def test_spend_above_the_minimum_has_no_true_up(acme: Api, clock: SettableClock) -> None:
    assert bill(acme, clock, 6000) == [("base_fee", 50_000), ("usage", 60_000)]


def test_the_minimum_is_in_the_plans_currency(acme: Api) -> None:
    body = {**PLAN, "minimum_spend": {"amount": 100, "currency": "EUR"}}
    response = acme.call("POST", "/v1/plans", json=body)
    assert_error(response, 422, "validation_error")
    assert "minimum_spend" in response.text
