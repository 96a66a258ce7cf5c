"""Dunning over HTTP on the embedded system: `PUT/GET /v1/billing-settings` (scopes, defaults,
422 naming the field, isolation between apps), `POST /v1/invoices/{id}/uncollectible`, and a
failed payment retried by `POST /v1/billing-runs` until the subscription is canceled."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.factories import T0
from tests.unit.http.support import Api, assert_error

DEFAULTS = {
    "grace_period_hours": 0,
    "proration_unit": "second",
    "dunning_retry_days": [1, 3, 5, 7],
    "dunning_final_action": "cancel",
}
PLAN = {"plan_key": "pro", "name": "Pro", "base_price": {"amount": 4900, "currency": "USD"}}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_billing_settings_default_then_set_by_an_admin(acme: Api, globex: Api) -> None:
    assert ok(acme.call("GET", "/v1/billing-settings", scope="read")) == DEFAULTS
    body = {"dunning_retry_days": [2, 4], "dunning_final_action": "unpaid"}
    assert_error(
        acme.call("PUT", "/v1/billing-settings", scope="write", json=body), 403, "forbidden"
    )
    expected = {**DEFAULTS, **body}
    assert ok(acme.call("PUT", "/v1/billing-settings", json=body)) == expected
    assert ok(acme.call("GET", "/v1/billing-settings", scope="read")) == expected
    assert ok(globex.call("GET", "/v1/billing-settings", scope="read")) == DEFAULTS
    # PUT replaces the whole settings: a field left out takes its default again
    assert ok(acme.call("PUT", "/v1/billing-settings", json={"grace_period_hours": 24})) == {
        **DEFAULTS,
        "grace_period_hours": 24,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dunning_retry_days": [3, 1]}, "dunning_retry_days"),
        ({"dunning_retry_days": [1, 1]}, "dunning_retry_days"),
        ({"dunning_retry_days": [0]}, "dunning_retry_days"),
        ({"dunning_retry_days": [91]}, "dunning_retry_days"),
        ({"dunning_final_action": "forgive"}, "dunning_final_action"),
        ({"grace_period_hours": -1}, "grace_period_hours"),
        ({"proration_unit": "week"}, "proration_unit"),
        ({"app_id": "globex"}, "app_id"),
    ],
)
def test_bad_billing_settings_are_refused_naming_the_field(
    acme: Api, body: dict[str, Any], field: str
) -> None:
    response = acme.call("PUT", "/v1/billing-settings", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field
    assert ok(acme.call("GET", "/v1/billing-settings", scope="read")) == DEFAULTS  # nothing written


def open_invoice(api: Api) -> str:
    line = {
        "kind": "base_fee",
        "description": "fee",
        "unit_amount": {"amount": 500, "currency": "USD"},
    }
    body = {"tenant_id": "t1", "currency": "USD", "lines": [line]}
    invoice_id = str(
        ok(api.call("POST", "/v1/invoices", scope="write", json=body), 201)["invoice_id"]
    )
    ok(api.call("POST", f"/v1/invoices/{invoice_id}/finalize", scope="write"))
    return invoice_id


def test_an_open_invoice_is_marked_uncollectible(acme: Api, globex: Api) -> None:
    invoice_id = open_invoice(acme)
    path = f"/v1/invoices/{invoice_id}/uncollectible"
    assert_error(acme.call("POST", path, scope="read"), 403, "forbidden")
    assert_error(globex.call("POST", path, scope="write"), 404, "not_found", "invoice_id")
    marked = ok(acme.call("POST", path, scope="write"))
    assert marked["status"] == "uncollectible" and marked["marked_uncollectible_at"] is not None
    assert_error(acme.call("POST", path, scope="write"), 409, "invalid_transition", "status")
    paid = ok(acme.call("POST", f"/v1/invoices/{invoice_id}/pay", scope="write"))
    assert paid["status"] == "paid"  # an uncollectible invoice can still be paid


def test_a_failed_payment_is_retried_by_billing_runs_until_the_subscription_is_canceled(
    acme: Api,
) -> None:
    ok(acme.call("PUT", "/v1/billing-settings", json={"dunning_retry_days": [1, 2]}))
    ok(acme.call("POST", "/v1/plans", json=PLAN), 201)
    body = {"tenant_id": "t1", "plan_key": "pro"}
    sub = ok(acme.call("POST", "/v1/subscriptions", json=body), 201)
    run = {"until": T0.isoformat()}
    assert ok(acme.call("POST", "/v1/billing-runs", json=run))["invoiced"] == 1
    [invoice] = ok(acme.call("GET", "/v1/invoices?tenant_id=t1", scope="read"))["invoices"]
    failure = {"invoice_id": invoice["invoice_id"], "reason": "card declined"}
    failed = ok(acme.call("POST", "/v1/commands/fail_invoice_payment", scope="write", json=failure))
    assert failed["result"]["next_retry_at"] == (T0 + timedelta(days=1)).isoformat()
    path = f"/v1/subscriptions/{sub['subscription_id']}"
    assert ok(acme.call("GET", path, scope="read"))["status"] == "past_due"
    run = {"until": (T0 + timedelta(days=3)).isoformat()}
    report = ok(acme.call("POST", "/v1/billing-runs", json=run))
    assert report["payments_retried"] == 2 and report["errors"] == []
    invoice = ok(acme.call("GET", f"/v1/invoices/{invoice['invoice_id']}", scope="read"))
    assert (invoice["status"], invoice["payment_attempts"]) == ("uncollectible", 3)
    assert invoice["last_payment_error"] == "no payment provider configured"
    assert ok(acme.call("GET", path, scope="read"))["status"] == "canceled"
