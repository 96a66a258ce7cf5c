"""Stripe end to end on the real parts: PostgreSQL, the official SDK against localstripe (the
test Stripe server), webhooks signed with Stripe's scheme through the HTTP intake.

checkout completed -> subscription active -> billing run -> invoice charged (declined) ->
invoice.payment_failed -> past_due -> retry -> paid -> charge.refunded -> credit note, and
the reconciliation of the result.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from adapters.billing.runs import run_billing
from adapters.bootstrap import System, bootstrap
from adapters.http.app import create_app
from adapters.settings import Settings
from domain.clock import SettableClock
from domain.credit_note import CreditNote
from domain.invoice import Invoice
from domain.payment_account import PaymentAccount, payment_account_id
from domain.subscription import Subscription
from tests.factories import T0
from tests.stripe_server import DECLINING_CARD, StripeTestKnobs, request
from tests.stripe_signing import SECRET, sign
from tests.unit.http.support import Api

pytestmark = pytest.mark.postgres

APP = "shop"


@pytest.fixture(autouse=True)
def _own_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """An app of its own per test: the test Stripe server is shared by the session."""
    monkeypatch.setattr(sys.modules[__name__], "APP", f"shop-{uuid.uuid4().hex[:10]}")


PROFILE = {
    "name": "Tenant One",
    "email": "billing@t1.example",
    "country": "US",
    "tax_status": "exempt",
    "timezone": "America/New_York",
    "currency": "USD",
}
PLAN = {"plan_key": "pro", "name": "Pro", "base_price": {"amount": 4900, "currency": "USD"}}


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def system(pg_url: str, pg_schema: str, stripe_api: str, clock: SettableClock) -> Iterator[System]:
    settings = Settings(
        database_url=pg_url,
        clock="settable",
        stripe_api_key="sk_test_tally",
        stripe_api_base=stripe_api,
        stripe_webhook_secret=SECRET,
    )
    built = bootstrap(settings, clock, schema=pg_schema, deliver_in_process=False)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def api(system: System) -> Iterator[Api]:
    with TestClient(create_app(system)) as client:
        yield Api(client, system, APP)


def sync(system: System) -> list[str]:
    system.sync()
    assert system.stripe is not None
    return system.stripe.sync.run_due().outcomes


def deliver(api: Api, event_id: str, type_: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A Stripe event as Stripe posts it (https://docs.stripe.com/webhooks#verify-events)."""
    body = orjson.dumps({"id": event_id, "object": "event", "type": type_, "data": {"object": obj}})
    response = api.client.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign(body), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


def account(system: System) -> PaymentAccount:
    found = system.aggregate(payment_account_id(APP, "t1"))
    assert isinstance(found, PaymentAccount)
    return found


def checkout_completed(api: Api, system: System, stripe_api: str) -> Subscription:
    """The tenant completes Checkout: Stripe made the subscription and sends the event."""
    body = {"tenant_id": "t1", "plan_key": "pro", "success_url": "https://shop.example/ok"}
    response = api.call(
        "POST", "/v1/checkout/sessions", json={**body, "cancel_url": body["success_url"]}
    )
    assert response.status_code == 200, response.text
    session_id = response.json()["checkout_url"].rsplit("/", 1)[-1]
    session = request(stripe_api, "GET", f"/v1/checkout/sessions/{session_id}")
    price = account_price(system)
    made = request(
        stripe_api,
        "POST",
        "/v1/subscriptions",
        {"customer": session["customer"], "items[0][price]": price, "trial_period_days": "1"},
    )
    completed = {**session, "status": "complete", "subscription": made["id"]}
    outcome = deliver(api, "evt_checkout_1", "checkout.session.completed", completed)
    assert outcome["status"] == "processed", outcome
    system.index.refresh()
    (subscription_id,) = system.index.ids(APP, "subscription", "t1")
    subscription = system.aggregate(subscription_id)
    assert isinstance(subscription, Subscription)
    assert account(system).provider_subscription(subscription.id) == made["id"]
    return subscription


def account_price(system: System) -> str:
    assert system.stripe is not None
    catalog = system.stripe.ctx.catalog(APP)
    assert catalog is not None
    price = catalog.price("pro", 1)
    assert price is not None
    return price


def only_invoice(system: System) -> Invoice:
    system.index.refresh()
    (invoice_id,) = system.index.ids(APP, "invoice", "t1")
    invoice = system.aggregate(invoice_id)
    assert isinstance(invoice, Invoice)
    return invoice


def stripe_invoice(stripe_api: str, system: System, invoice: Invoice) -> dict[str, Any]:
    linked = account(system).provider_invoice(invoice.id)
    assert linked is not None, "the invoice was not pushed to Stripe"
    return request(stripe_api, "GET", f"/v1/invoices/{linked}")


def test_checkout_to_refund_through_stripe(
    api: Api, system: System, clock: SettableClock, stripe_api: str
) -> None:
    knobs = StripeTestKnobs(stripe_api)
    assert api.call("POST", "/v1/plans", json=PLAN).status_code == 201
    assert api.call("PUT", "/v1/tenants/t1/profile", json=PROFILE).status_code == 200
    sync(system)  # the customer, the product and the price exist at Stripe
    customer = request(stripe_api, "GET", f"/v1/customers/{account(system).customer_id}")
    assert customer["metadata"] == {"tally_app_id": APP, "tally_tenant_id": "t1"}

    declining = knobs.make_card(DECLINING_CARD)
    path = "/v1/tenants/t1/payment-methods"
    assert api.call("POST", path, json={"payment_method": declining}).status_code == 200

    subscription = checkout_completed(api, system, stripe_api)
    assert subscription.state.status.value == "active"

    run_billing(system, system.index.ids, APP, clock, clock.now())
    invoice = only_invoice(system)
    assert invoice.status.value == "open" and invoice.amount_due.amount == 4900
    sync(system)  # pushed, charged, declined: the first failed attempt
    mirror = account(system).provider_subscription(subscription.id)
    at_stripe_subscription = request(stripe_api, "GET", f"/v1/subscriptions/{mirror}")
    assert at_stripe_subscription["pause_collection"] == {"behavior": "void"}  # never collects
    failed = system.aggregate(invoice.id)
    assert failed.state.payment_attempts == 1
    assert system.aggregate(subscription.id).state.status.value == "past_due"
    at_stripe = stripe_invoice(stripe_api, system, invoice)
    assert at_stripe["amount_due"] == 4900
    assert at_stripe["metadata"]["tally_invoice_id"] == str(invoice.id)

    # Stripe's own webhook of the same failure is recognized, not counted twice
    outcome = deliver(api, "evt_failed_1", "invoice.payment_failed", at_stripe)
    assert outcome["status"] == "processed"
    assert system.aggregate(invoice.id).state.payment_attempts == 1

    good = knobs.make_card()
    assert api.call("POST", path, json={"payment_method": good}).status_code == 200
    retry_at = failed.state.next_retry_at
    run_billing(system, system.index.ids, APP, clock, retry_at + timedelta(minutes=1))
    paid = system.aggregate(invoice.id)
    assert paid.status.value == "paid"
    assert system.aggregate(subscription.id).state.status.value == "active"
    at_stripe = stripe_invoice(stripe_api, system, invoice)
    assert at_stripe["status"] == "paid"
    deliver(api, "evt_paid_1", "invoice.payment_succeeded", at_stripe)
    assert system.aggregate(invoice.id).status.value == "paid"

    charge_id = request(stripe_api, "GET", f"/v1/payment_intents/{at_stripe['payment_intent']}")[
        "latest_charge"
    ]
    charge_id = charge_id if isinstance(charge_id, str) else charge_id["id"]
    request(stripe_api, "POST", "/v1/refunds", {"charge": charge_id, "amount": "1900"})
    charge = request(stripe_api, "GET", f"/v1/charges/{charge_id}")
    assert charge["metadata"]["tally_invoice_id"] == str(invoice.id)
    refunds = request(stripe_api, "GET", f"/v1/refunds?charge={charge_id}")["data"]
    refunded = {**charge, "refunds": {"object": "list", "data": refunds}}
    threads = [
        threading.Thread(target=deliver, args=(api, "evt_refund_1", "charge.refunded", refunded))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    credited = system.aggregate(invoice.id)
    assert len(credited.state.credit_note_ids) == 1
    note = system.aggregate(credited.state.credit_note_ids[0])
    assert isinstance(note, CreditNote)
    assert note.state.total.amount == 1900
    assert note.state.method.value == "refund"
    assert note.state.refund_status == "refunded"  # Stripe paid it back: not owed
    assert note.state.payment_reference == refunds[0]["id"]

    assert system.stripe is not None
    system.index.refresh()
    report = system.stripe.reconciler.reconcile(APP)
    mine = [d for d in report["drifts"] if d["object_id"] == str(invoice.id)]
    assert mine == [], report
