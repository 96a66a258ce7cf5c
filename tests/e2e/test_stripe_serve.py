"""Stripe on a real `tally serve` (PostgreSQL, NATS when running, the test Stripe server):
the worker inside serve makes the customer from a saved profile, and the webhook route
verifies before it records (a forged or stale delivery changes nothing; a valid one is
processed once, also when delivered again)."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from tests.e2e.conftest import Server, eventually
from tests.stripe_server import request
from tests.stripe_signing import sign

pytestmark = pytest.mark.postgres
WITH_STRIPE = True

PROFILE = {
    "name": "Serve Tenant",
    "email": "billing@serve.example",
    "country": "NL",
    "tax_status": "taxable",
    "timezone": "Europe/Amsterdam",
    "currency": "EUR",
}


def events_of(client: httpx.Client) -> list[dict[str, object]]:
    found: list[dict[str, object]] = client.get("/v1/events", params={"limit": "1000"}).json()[
        "events"
    ]
    return found


def test_the_worker_in_serve_makes_the_customer_and_webhooks_are_verified(
    server: Server, stripe_api: str
) -> None:
    app = server.app_id("serve")
    admin = server.client("serve", "admin")
    assert admin.put("/v1/tenants/t1/profile", json=PROFILE).status_code == 200

    def linked() -> str:
        found = [e for e in events_of(admin) if e["type"] == "PaymentCustomerLinked"]
        assert found, "no Stripe customer yet"
        return str(found[0]["data"]["customer_id"])  # type: ignore[index]

    customer = eventually(linked, timeout=30)
    at_stripe = request(stripe_api, "GET", f"/v1/customers/{customer}")
    assert at_stripe["email"] == PROFILE["email"]
    assert at_stripe["metadata"] == {"tally_app_id": app, "tally_tenant_id": "t1"}

    event = {
        "id": "evt_serve_1",
        "object": "event",
        "type": "customer.updated",
        "data": {"object": {**at_stripe, "name": "Renamed At Stripe"}},
    }
    body = orjson.dumps(event)
    anonymous = httpx.Client(base_url=server.base_url, timeout=30)
    before = events_of(admin)
    for headers in (
        {},
        {"Stripe-Signature": sign(body, secret="whsec_wrong")},
        {"Stripe-Signature": sign(body, timestamp=int(time.time()) - 3600)},
        {"Stripe-Signature": sign(body + b" ")},
    ):
        refused = anonymous.post("/v1/webhooks/stripe", content=body, headers=headers)
        assert refused.status_code == 400, refused.text
    assert events_of(admin) == before, "a refused webhook recorded something"

    signed = {"Stripe-Signature": sign(body), "Content-Type": "application/json"}
    first = anonymous.post("/v1/webhooks/stripe", content=body, headers=signed)
    again = anonymous.post("/v1/webhooks/stripe", content=body, headers=signed)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.json()["duplicate"] is True
    profile = admin.get("/v1/tenants/t1/profile").json()
    assert profile["name"] == "Renamed At Stripe"
    processed = [e for e in events_of(admin) if e["type"] == "ProviderWebhookProcessed"]
    assert len(processed) == 1
