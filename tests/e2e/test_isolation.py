"""Isolation between apps on EVERY /v1 route of a real `tally serve`: no key and a bad key
answer 401, a key without the route's scope 403, and another app's key never sees or changes
this app's data (its ids answer 404; lists, tenant reads and the audit log show none of it).

The table below must cover every /v1 operation of /openapi.json: a new route fails this test
until its isolation case is written."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ROOT, Server, eventually, tally_command

pytestmark = pytest.mark.postgres
WITH_STRIPE = True  # the Stripe routes answer for real (tests/stripe_server.py)

A, B = "iso-alpha", "iso-beta"
USD = "USD"
PLAN = {
    "plan_key": "gold",
    "name": "Gold",
    "base_price": {"amount": 5000, "currency": USD},
    "trial_days": 30,
    "features": [
        {"key": "sso", "kind": "boolean"},
        {"key": "api-calls", "kind": "metered", "limit": 100},
    ],
}
COUPON = {"code": "welcome", "percent_off": 10, "duration": "forever"}
# never fires: tenant-a uses 7 of its 100 api-calls
ALERT = {
    "tenant_id": "tenant-a",
    "kind": "usage",
    "feature_key": "api-calls",
    "thresholds": [{"percent": 90}],
}
PROFILE = {
    "name": "Alpha Ltd",
    "email": "billing@alpha.example",
    "country": "DE",
    "tax_status": "taxable",
    "timezone": "Europe/Berlin",
    "currency": USD,
}
TAX_RATE = {"rate_percent": "19.0", "behavior": "exclusive"}
METER = {
    "key": "peak-storage",
    "event_type": "storage",
    "aggregation": "max",
    "value_property": "bytes",
}
SETTINGS = {
    "grace_period_hours": 48,
    "proration_unit": "day",
    "dunning_retry_days": [2, 4],
    "dunning_final_action": "unpaid",
}
DEFAULT_SETTINGS = {
    "grace_period_hours": 0,
    "proration_unit": "second",
    "dunning_retry_days": [1, 3, 5, 7],
    "dunning_final_action": "cancel",
}
LINE = {
    "kind": "base_fee",
    "description": "Gold",
    "quantity": 1,
    "unit_amount": {"amount": 5000, "currency": USD},
}
SCOPE_RANK = {"read": 0, "write": 1, "admin": 2}
LOWER = {"write": "read", "admin": "write"}


@dataclass
class World:
    """App A's resources, and clients for both apps."""

    server: Server
    subscription_id: str = ""
    invoice_id: str = ""
    alert_id: str = ""
    grant_id: str = ""
    credit_note_id: str = ""
    clients: dict[tuple[str, str], httpx.Client] = field(default_factory=dict)

    def client(self, app_id: str, scope: str) -> httpx.Client:
        if (app_id, scope) not in self.clients:
            self.clients[(app_id, scope)] = self.server.client(app_id, scope)
        return self.clients[(app_id, scope)]

    def a(self, scope: str = "admin") -> httpx.Client:
        return self.client(A, scope)

    def b(self) -> httpx.Client:
        return self.client(B, "admin")


Check = Callable[[World, httpx.Response], None]


@dataclass
class Case:
    method: str
    template: str
    scope: str
    other_app: Check
    body: Callable[[World], Any] = lambda _: None
    params: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)  # path values other than the defaults

    def path(self, world: World) -> str:
        defaults = dict(
            subscription_id=world.subscription_id,
            invoice_id=world.invoice_id,
            alert_id=world.alert_id,
            grant_id=world.grant_id,
            credit_note_id=world.credit_note_id,
            plan_key="gold",
            tenant_id="tenant-a",
            feature_key="beta",
            command_name="pause_subscription",
            code=COUPON["code"],
            country=PROFILE["country"],
        )
        return self.template.format(**{**defaults, **self.values})

    def send(self, world: World, client: httpx.Client) -> httpx.Response:
        body = self.body(world)
        return client.request(
            self.method,
            self.path(world),
            params=self.params,
            json=body if body is not None else None,
        )


def not_found(_: World, response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] in ("not_found", "unknown_command")


def not_found_naming(field: str) -> Check:
    """404 naming the field whose id is hidden (not some other missing thing)."""

    def check(world: World, response: httpx.Response) -> None:
        not_found(world, response)
        assert response.json()["error"]["details"][0]["field"] == field, response.text

    return check


def no_a_ids(key: str, attribute: str) -> Check:
    def check(world: World, response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        found = {item[attribute] for item in response.json()[key]}
        assert world.subscription_id not in found and world.invoice_id not in found
        assert "gold" not in found or key != "plans"

    return check


def empty(key: str) -> Check:
    def check(_: World, response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        assert response.json()[key] == [], response.json()

    return check


def nothing_allowed(_: World, response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    rows = body.get("results", [body])
    assert rows and all(row["allowed"] is False for row in rows), rows
    assert all(row.get("used") in (None, 0) for row in rows), rows


def only_own_events(world: World, response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    own = world.server.app_id(B)
    assert {event["app_id"] for event in response.json()["events"]} <= {own}


def own_chain_only(world: World, response: httpx.Response) -> None:
    """B's chain covers B's events only: what it checked plus what waits for the sealer is
    exactly B's log (A's many events count nowhere)."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["app_id"] == world.server.app_id(B) and body["intact"] is True, body
    own = world.b().get("/v1/events", params={"limit": "1000"}).json()["events"]
    assert body["checked"] + body["not_yet_sealed"] == len(own), (body, len(own))


def no_revenue(_: World, response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mrr"] == {} and body["recognized"] == [], body


def no_subscriptions(_: World, response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["active_total"] == 0, response.json()


def usage_not_counted(world: World, response: httpx.Response) -> None:
    assert response.status_code == 404, response.text  # B has no such quota
    time.sleep(0.5)
    answer = world.a("read").get("/v1/tenants/tenant-a/entitlements/api-calls").json()
    assert answer["used"] == 7, answer


def plan_refused(_: World, response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["details"][0]["field"] == "plan_key"


def default_settings(_: World, response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == DEFAULT_SETTINGS  # not A's SETTINGS


def priced_alone(_: World, response: httpx.Response) -> None:
    """Stateless: B gets the body's price, the same for every app."""
    assert response.status_code == 200, response.text
    assert response.json()["amount"] == {"amount": 21, "currency": USD}, response.json()


def own_grant_only(world: World, response: httpx.Response) -> None:
    assert response.status_code == 201, response.text  # B's own grant for its own tenant
    time.sleep(0.5)
    answer = world.a("read").get("/v1/tenants/tenant-a/entitlements/b-only").json()
    assert answer["allowed"] is False, answer


def own_plan_only(world: World, response: httpx.Response) -> None:
    assert response.status_code == 201, response.text  # B's catalog is its own
    plan = world.a("read").get("/v1/plans/gold").json()
    assert plan["name"] == "Gold" and plan["latest_version"] == 1, plan


def a_untouched_by_billing_run(world: World, response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["trials_ended"] == 0
    subscription = world.a("read").get(f"/v1/subscriptions/{world.subscription_id}").json()
    assert subscription["status"] == "trialing" and subscription["version"] == 1


def own_coupon_only(world: World, response: httpx.Response) -> None:
    assert response.status_code == 201, response.text  # B's coupon of the same code
    assert response.json()["percent_off"] == 50
    coupon = world.a("read").get(f"/v1/coupons/{COUPON['code']}").json()
    assert coupon["percent_off"] == 10 and coupon["version"] == 1, coupon


def own_tax_rate_only(world: World, response: httpx.Response) -> None:
    assert response.status_code == 200, response.text  # B's rate for the same country
    assert response.json()["rate_percent"] == "7.0"
    rates = world.a("read").get("/v1/tax-rates").json()["tax_rates"]
    assert [(r["country"], r["rate_percent"], r["version"]) for r in rates] == [
        ("DE", "19.0", 1)
    ], rates


def own_profile_only(world: World, response: httpx.Response) -> None:
    assert response.status_code == 200, response.text  # B's profile of its own tenant-a
    assert response.json()["name"] == "Beta's customer"
    profile = world.a("read").get("/v1/tenants/tenant-a/profile").json()
    assert profile["name"] == PROFILE["name"] and profile["version"] == 1, profile


def own_meter_only(world: World, response: httpx.Response) -> None:
    assert response.status_code == 201, response.text  # B's meter of the same key: no 409
    assert response.json()["aggregation"] == "latest"
    meters = world.a("read").get("/v1/meters").json()["meters"]
    assert [(m["key"], m["aggregation"]) for m in meters] == [("peak-storage", "max")], meters


def no_stripe_of_a(_: World, response: httpx.Response) -> None:
    """B's key reaches only B's Stripe side: no customer of A's tenant (B has no profile
    for it: 409; no plan gold yet: 404), or Stripe is off on this server (503)."""
    code = response.json()["error"]["code"]
    expected = {503: "not_configured", 409: "no_billing_profile", 404: "not_found"}
    assert expected.get(response.status_code) == code, response.text


def no_payment_methods_of_a(_: World, response: httpx.Response) -> None:
    if response.status_code == 503:
        assert response.json()["error"]["code"] == "not_configured", response.text
        return
    assert response.status_code == 200, response.text
    assert response.json()["payment_methods"] == []


def no_reconciliation_of_a(_: World, response: httpx.Response) -> None:
    if response.status_code == 503:
        assert response.json()["error"]["code"] == "not_configured", response.text
        return
    assert response.status_code == 404, response.text  # B's app never reconciled


STRIPE_URLS = {"success_url": "https://b.example/ok", "cancel_url": "https://b.example/back"}


def own_settings_only(world: World, response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["grace_period_hours"] == 1
    assert world.a("read").get("/v1/billing-settings").json() == SETTINGS


def no_a_subscriptions_simulated(world: World, response: httpx.Response) -> None:
    """B's own plan gold (defined just before) has no subscriptions: A's are not priced."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenants"] == [], body
    assert body["skipped"] == [
        {"tenant_id": "tenant-a", "subscription_id": None, "reason": "no_subscription"}
    ], body
    assert world.subscription_id not in response.text


def simulation_of_gold(_: World) -> dict[str, Any]:
    return {
        "plan_key": "gold",
        "draft": {k: v for k, v in PLAN.items() if k != "plan_key"},
        "period": {"start": "2030-01-01T00:00:00Z", "end": "2030-02-01T00:00:00Z"},
        "tenant_ids": ["tenant-a"],
    }


def own_alert_only(world: World, response: httpx.Response) -> None:
    assert response.status_code == 201, response.text  # B's alert on its own tenant-a
    assert response.json()["alert_id"] != world.alert_id
    alerts = world.a("read").get("/v1/alerts").json()["alerts"]
    assert [a["alert_id"] for a in alerts] == [world.alert_id], alerts


CREDIT = {"amount": {"amount": 1234, "currency": USD}, "priority": 0, "reason": "prepaid"}


def own_credit_only(world: World, response: httpx.Response) -> None:
    assert response.status_code == 201, response.text  # B's grant to its own tenant-a
    assert response.json()["grant_id"] != world.grant_id
    time.sleep(0.5)
    grants = world.a("read").get("/v1/tenants/tenant-a/credits").json()["grants"]
    assert [(g["grant_id"], g["remaining"]["amount"]) for g in grants] == [
        (world.grant_id, 1234)
    ], grants


def own_quota_only(world: World, response: httpx.Response) -> None:
    """B's quota of its own tenant-a: A's quota of tenant-a keeps its limit and usage."""
    assert response.status_code == 200, response.text  # created in B's app
    assert response.json()["limit"] == 3 and response.json()["used"] == 0
    time.sleep(0.5)
    answer = world.a("read").get("/v1/tenants/tenant-a/entitlements/api-calls").json()
    assert (answer["limit"], answer["used"]) == (100, 7), answer


METERED = {"feature_key": "api-calls"}  # A's quota of tenant-a (from its subscription)


def billing_until(world: World) -> dict[str, str]:
    subscription = world.a("read").get(f"/v1/subscriptions/{world.subscription_id}").json()
    return {"until": subscription["trial_end"].replace("+00:00", "Z")}


def draft_for_a(world: World) -> dict[str, Any]:
    return {"tenant_id": "tenant-a", "subscription_id": world.subscription_id, "currency": USD}


CASES = [
    # ids of A's resources: 404 for B
    Case("GET", "/v1/plans/{plan_key}", "read", not_found),
    Case(
        "POST",
        "/v1/plans/{plan_key}/revisions",
        "admin",
        not_found,
        body=lambda _: {k: v for k, v in PLAN.items() if k != "plan_key"},
    ),
    Case("POST", "/v1/plans/{plan_key}/archive", "admin", not_found),
    Case("GET", "/v1/subscriptions/{subscription_id}", "read", not_found),
    Case(
        "POST",
        "/v1/subscriptions/{subscription_id}/change-plan",
        "write",
        not_found,
        body=lambda _: {"plan_key": "gold"},
    ),
    Case(
        "POST",
        "/v1/subscriptions/{subscription_id}/cancel",
        "write",
        not_found,
        body=lambda _: {"at_period_end": True},
    ),
    Case("POST", "/v1/subscriptions/{subscription_id}/undo-cancel", "write", not_found),
    Case("POST", "/v1/subscriptions/{subscription_id}/pause", "write", not_found),
    Case("POST", "/v1/subscriptions/{subscription_id}/resume", "write", not_found),
    Case("GET", "/v1/invoices/{invoice_id}", "read", not_found),
    Case("GET", "/v1/invoices/{invoice_id}/pdf", "read", not_found),
    Case("POST", "/v1/invoices/{invoice_id}/finalize", "write", not_found),
    Case("POST", "/v1/invoices/{invoice_id}/pay", "write", not_found),
    Case(
        "POST",
        "/v1/invoices/{invoice_id}/void",
        "write",
        not_found,
        body=lambda _: {"reason": "not yours"},
    ),
    Case(
        "POST",
        "/v1/commands/{command_name}",
        "write",
        not_found,
        body=lambda w: {"subscription_id": w.subscription_id},
    ),
    Case("DELETE", "/v1/tenants/{tenant_id}/grants/{feature_key}", "admin", not_found),
    Case("POST", "/v1/invoices", "write", not_found, body=draft_for_a),
    Case(
        "POST",
        "/v1/invoices/{invoice_id}/lines",
        "write",
        not_found_naming("invoice_id"),
        body=lambda _: LINE,
    ),
    Case("POST", "/v1/invoices/{invoice_id}/uncollectible", "write", not_found),
    Case("GET", "/v1/invoices/{invoice_id}/explain", "read", not_found_naming("invoice_id")),
    Case(
        "POST",
        "/v1/invoices/{invoice_id}/credit-notes",
        "write",
        not_found_naming("invoice_id"),
        body=lambda _: {"reason": "not yours", "method": "credit_balance"},
    ),
    Case("GET", "/v1/credit-notes/{credit_note_id}", "read", not_found_naming("credit_note_id")),
    Case(
        "GET", "/v1/credit-notes/{credit_note_id}/pdf", "read", not_found_naming("credit_note_id")
    ),
    Case("GET", "/v1/invoices/{invoice_id}/recompute", "read", not_found_naming("invoice_id")),
    Case(
        "GET",
        "/v1/subscriptions/{subscription_id}/upcoming-invoice",
        "read",
        not_found_naming("subscription_id"),
    ),
    Case(
        "PUT",
        "/v1/subscriptions/{subscription_id}/seats",
        "write",
        not_found_naming("subscription_id"),
        body=lambda _: {"quantity": 2},
    ),
    Case(
        "POST",
        "/v1/subscriptions/{subscription_id}/coupons",
        "write",
        not_found_naming("subscription_id"),
        body=lambda _: {"code": COUPON["code"]},
    ),
    Case("GET", "/v1/coupons/{code}", "read", not_found_naming("code")),
    Case(
        "POST",
        "/v1/coupons/{code}/redemptions",
        "write",
        not_found_naming("code"),
        body=lambda _: {"tenant_id": "tenant-a"},
    ),
    Case("POST", "/v1/coupons/{code}/deactivate", "admin", not_found_naming("code")),
    Case(
        "POST",
        "/v1/subscriptions/{subscription_id}/end-trial",
        "write",
        not_found_naming("subscription_id"),
    ),
    Case(
        "POST",
        "/v1/subscriptions/{subscription_id}/expire",
        "write",
        not_found_naming("subscription_id"),
    ),
    Case(
        "POST",
        "/v1/invoices/{invoice_id}/payment-failures",
        "write",
        not_found_naming("invoice_id"),
        body=lambda _: {"reason": "card_declined"},
    ),
    Case(
        "POST",
        "/v1/invoices/{invoice_id}/retry-payment",
        "admin",
        not_found_naming("invoice_id"),
    ),
    Case(
        "GET",
        "/v1/tenants/{tenant_id}/quotas/{feature_key}",
        "read",
        not_found_naming("feature_key"),
        values=METERED,
    ),
    Case(
        "POST",
        "/v1/tenants/{tenant_id}/quotas/{feature_key}/allowances",
        "admin",
        not_found_naming("feature_key"),
        body=lambda _: {"amount": 50, "reason": "not yours"},
        values=METERED,
    ),
    Case(
        "DELETE",
        "/v1/tenants/{tenant_id}/quotas/{feature_key}/allowances/{grant_id}",
        "admin",
        not_found_naming("feature_key"),
        values=METERED,
    ),
    Case(
        "POST",
        "/v1/tenants/{tenant_id}/quotas/{feature_key}/reset",
        "admin",
        not_found_naming("feature_key"),
        values=METERED,
    ),
    Case("DELETE", "/v1/alerts/{alert_id}", "write", not_found_naming("alert_id")),
    Case(
        "POST",
        "/v1/tenants/{tenant_id}/credits/{grant_id}/void",
        "write",
        not_found_naming("grant_id"),
    ),
    Case("GET", "/v1/tenants/{tenant_id}/profile", "read", not_found_naming("tenant_id")),
    Case(
        "GET",
        "/v1/plans/compare",
        "read",
        not_found_naming("a"),
        params={"a": "gold", "b": "gold@1"},
    ),
    Case(
        "POST",
        "/v1/subscriptions",
        "write",
        plan_refused,
        body=lambda _: {"tenant_id": "tenant-b", "plan_key": "gold"},
    ),
    # lists and reads: none of A's data
    Case("GET", "/v1/plans", "read", no_a_ids("plans", "plan_key")),
    Case("GET", "/v1/invoices", "read", empty("invoices")),
    Case("GET", "/v1/credit-notes", "read", empty("credit_notes")),
    Case("GET", "/v1/events", "read", only_own_events, params={"limit": "1000"}),
    Case("GET", "/v1/audit/verify", "admin", own_chain_only),
    Case("GET", "/v1/tenants/{tenant_id}/entitlements", "read", empty("entitlements")),
    Case("GET", "/v1/tenants/{tenant_id}/entitlements/{feature_key}", "read", nothing_allowed),
    Case(
        "POST",
        "/v1/entitlements/check",
        "read",
        nothing_allowed,
        body=lambda _: {"tenant_id": "tenant-a", "feature_keys": ["sso", "api-calls", "beta"]},
    ),
    Case("GET", "/v1/tenants/{tenant_id}/usage", "read", empty("usage")),
    Case("GET", "/v1/tenants/{tenant_id}/usage/current", "read", empty("usage")),
    Case("GET", "/v1/revenue", "read", no_revenue),
    Case("GET", "/v1/metrics/subscriptions", "read", no_subscriptions),
    Case(
        "GET",
        "/v1/subscriptions",
        "read",
        empty("subscriptions"),
        params={"tenant_id": "tenant-a"},
    ),
    Case("GET", "/v1/coupons", "read", empty("coupons")),
    Case("GET", "/v1/alerts", "read", empty("alerts")),
    Case("GET", "/v1/tenants/{tenant_id}/credits", "read", empty("grants")),
    Case("GET", "/v1/tax-rates", "read", empty("tax_rates")),
    Case("GET", "/v1/meters", "read", empty("meters")),
    Case("GET", "/v1/billing-settings", "read", default_settings),
    Case(
        "POST",
        "/v1/pricing/rate",
        "read",
        priced_alone,
        body=lambda _: {
            "model": {"model": "per_unit", "unit_price": {"amount": 3, "currency": USD}},
            "quantity": 7,
        },
    ),
    # Stripe: B reaches B's customers only (before B saves its own profile of tenant-a)
    Case("GET", "/v1/tenants/{tenant_id}/payment-methods", "read", no_payment_methods_of_a),
    Case("GET", "/v1/stripe/reconciliation", "read", no_reconciliation_of_a),
    Case(
        "POST",
        "/v1/checkout/sessions",
        "write",
        no_stripe_of_a,
        body=lambda _: {"tenant_id": "tenant-a", "plan_key": "gold", **STRIPE_URLS},
    ),
    Case(
        "POST",
        "/v1/portal/sessions",
        "write",
        no_stripe_of_a,
        body=lambda _: {"tenant_id": "tenant-a", "return_url": "https://b.example/account"},
    ),
    Case(
        "POST",
        "/v1/tenants/{tenant_id}/payment-methods",
        "write",
        no_stripe_of_a,
        body=lambda _: {"payment_method": "pm_card_visa"},
    ),
    # writes by B land in B's app only
    Case(
        "POST",
        "/v1/usage",
        "write",
        usage_not_counted,
        body=lambda _: {
            "idempotency_key": "b-1",
            "tenant_id": "tenant-a",
            "feature_key": "api-calls",
            "quantity": 50,
        },
    ),
    Case(
        "POST",
        "/v1/tenants/{tenant_id}/grants",
        "admin",
        own_grant_only,
        body=lambda _: {"feature_key": "b-only", "reason": "B's own"},
    ),
    Case("POST", "/v1/plans", "admin", own_plan_only, body=lambda _: {**PLAN, "name": "B's"}),
    # records nothing; after B's own plan gold exists, so that the plan is found
    Case(
        "POST",
        "/v1/simulations/pricing",
        "write",
        no_a_subscriptions_simulated,
        body=simulation_of_gold,
    ),
    Case(
        "POST",
        "/v1/coupons",
        "admin",
        own_coupon_only,
        body=lambda _: {**COUPON, "percent_off": 50},
    ),
    Case(
        "PUT",
        "/v1/tax-rates/{country}",
        "admin",
        own_tax_rate_only,
        body=lambda _: {**TAX_RATE, "rate_percent": "7.0"},
    ),
    Case(
        "PUT",
        "/v1/tenants/{tenant_id}/profile",
        "write",
        own_profile_only,
        body=lambda _: {**PROFILE, "name": "Beta's customer"},
    ),
    Case(
        "PUT",
        "/v1/billing-settings",
        "admin",
        own_settings_only,
        body=lambda _: {"grace_period_hours": 1},
    ),
    Case(
        "POST",
        "/v1/meters",
        "write",
        own_meter_only,
        body=lambda _: {**METER, "aggregation": "latest"},
    ),
    Case("POST", "/v1/alerts", "write", own_alert_only, body=lambda _: ALERT),
    Case(
        "POST", "/v1/tenants/{tenant_id}/credits", "write", own_credit_only, body=lambda _: CREDIT
    ),
    Case("POST", "/v1/billing-runs", "admin", a_untouched_by_billing_run, body=billing_until),
    # after B's usage case (which must find no quota of B's)
    Case(
        "PUT",
        "/v1/tenants/{tenant_id}/quotas/{feature_key}",
        "admin",
        own_quota_only,
        body=lambda _: {"limit": 3},
        values=METERED,
    ),
]


@pytest.fixture(scope="module")
def world(server: Server) -> World:
    built = World(server)
    admin = built.a()
    assert admin.post("/v1/plans", json=PLAN).status_code == 201
    started = admin.post("/v1/subscriptions", json={"tenant_id": "tenant-a", "plan_key": "gold"})
    built.subscription_id = started.json()["subscription_id"]
    used = admin.post(
        "/v1/usage",
        json={
            "idempotency_key": "a-1",
            "tenant_id": "tenant-a",
            "feature_key": "api-calls",
            "quantity": 7,
        },
    )
    assert used.json()["accepted"] == 1
    granted = admin.post(
        "/v1/tenants/tenant-a/grants", json={"feature_key": "beta", "reason": "pilot"}
    )
    assert granted.status_code == 201
    draft = admin.post("/v1/invoices", json={**draft_for_a(built), "lines": [LINE]})
    built.invoice_id = draft.json()["invoice_id"]
    built.credit_note_id = credit_note_for_a(admin, built)
    alert = admin.post("/v1/alerts", json=ALERT)
    assert alert.status_code == 201, alert.text
    built.alert_id = alert.json()["alert_id"]
    credit = admin.post("/v1/tenants/tenant-a/credits", json=CREDIT)
    assert credit.status_code == 201, credit.text
    built.grant_id = credit.json()["grant_id"]
    set_up_billing(admin)
    assert admin.post("/v1/meters", json=METER).status_code == 201
    eventually(lambda: a_sees_its_data(built))
    eventually(lambda: stripe_settled(built), timeout=30)
    built.b()  # B has a key (and so an app) before the checks
    return built


def stripe_settled(world: World) -> None:
    """A's Stripe worker is done with A's objects (so A's log only changes by B's doing):
    the customer and the mirror are linked, and the log stays put for a second."""
    reader = world.a("read")
    first = reader.get("/v1/events", params={"limit": "1000"}).json()["events"]
    types = {event["type"] for event in first}
    assert {"PaymentCustomerLinked", "PaymentSubscriptionLinked"} <= types, sorted(types)
    time.sleep(1.0)
    assert reader.get("/v1/events", params={"limit": "1000"}).json()["events"] == first


def credit_note_for_a(admin: httpx.Client, world: World) -> str:
    """A finalized invoice of tenant-a with a credit note on it (B must not see it)."""
    drafted = admin.post("/v1/invoices", json={**draft_for_a(world), "lines": [LINE]})
    invoice = drafted.json()
    assert admin.post(f"/v1/invoices/{invoice['invoice_id']}/finalize").status_code == 200
    line = {"line_id": invoice["lines"][0]["line_id"], "amount": {"amount": 1000, "currency": USD}}
    note = admin.post(
        f"/v1/invoices/{invoice['invoice_id']}/credit-notes",
        json={"reason": "goodwill", "method": "reduce_amount_due", "lines": [line]},
    )
    assert note.status_code == 201, note.text
    return str(note.json()["credit_note_id"])


def set_up_billing(admin: httpx.Client) -> None:
    """A's coupon, tenant-a's billing profile, a tax rate and billing settings."""
    assert admin.post("/v1/coupons", json=COUPON).status_code == 201
    assert admin.put("/v1/tenants/tenant-a/profile", json=PROFILE).status_code == 200
    assert admin.put("/v1/tax-rates/DE", json=TAX_RATE).status_code == 200
    assert admin.put("/v1/billing-settings", json=SETTINGS).status_code == 200


def a_sees_its_data(world: World) -> None:
    """What B must not see is there for A (so B's 404s and empty lists mean isolation)."""
    reader = world.a("read")
    assert reader.get("/v1/tenants/tenant-a/entitlements/api-calls").json()["used"] == 7
    assert reader.get("/v1/tenants/tenant-a/entitlements/beta").json()["allowed"] is True
    assert reader.get("/v1/tenants/tenant-a/usage").json()["usage"]
    assert reader.get("/v1/metrics/subscriptions").json()["active_total"] == 1
    for path, params in READABLE_BY_A:
        response = reader.get(path.format(**vars(world)), params=params)
        assert response.status_code == 200, (path, response.text)
    assert reader.get("/v1/subscriptions", params={"tenant_id": "tenant-a"}).json()["subscriptions"]
    assert reader.get("/v1/coupons").json()["coupons"]
    assert reader.get("/v1/credit-notes").json()["credit_notes"]
    assert reader.get("/v1/alerts").json()["alerts"]
    assert reader.get("/v1/tenants/tenant-a/credits").json()["grants"]
    assert reader.get("/v1/tax-rates").json()["tax_rates"]
    assert reader.get("/v1/meters").json()["meters"]
    assert reader.get("/v1/billing-settings").json() == SETTINGS
    simulated = world.a("write").post("/v1/simulations/pricing", json=simulation_of_gold(world))
    assert simulated.status_code == 200 and simulated.json()["tenants"], simulated.text


READABLE_BY_A = [
    ("/v1/invoices/{invoice_id}/explain", {}),
    ("/v1/credit-notes/{credit_note_id}", {}),
    ("/v1/credit-notes/{credit_note_id}/pdf", {}),
    ("/v1/credit-notes", {"tenant_id": "tenant-a"}),
    ("/v1/invoices/{invoice_id}/recompute", {}),
    ("/v1/subscriptions/{subscription_id}/upcoming-invoice", {}),
    ("/v1/coupons/welcome", {}),
    ("/v1/tenants/tenant-a/profile", {}),
    ("/v1/tenants/tenant-a/quotas/api-calls", {}),
    ("/v1/plans/compare", {"a": "gold", "b": "gold@1"}),
]


def test_the_table_covers_every_v1_route(server: Server) -> None:
    spec = httpx.get(f"{server.base_url}/openapi.json").json()
    routes = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if path.startswith("/v1/")
        for method in operations
    }
    covered = {(case.method, case.template) for case in CASES}
    assert routes - covered == set(), "routes without an isolation case"
    assert covered - routes == set(), "cases for routes that do not exist"


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.template}")
def test_no_key_or_a_bad_key_is_401(world: World, case: Case) -> None:
    anonymous = httpx.Client(base_url=world.server.base_url, timeout=30)
    for headers in (
        {},
        {"Authorization": "Bearer tk_0123456789abcdef_forged"},
        {"Authorization": "Basic c2VjcmV0"},
    ):
        anonymous.headers = httpx.Headers(headers)
        response = case.send(world, anonymous)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.scope != "read"], ids=lambda c: f"{c.method} {c.template}"
)
def test_a_key_without_the_scope_is_403(world: World, case: Case) -> None:
    response = case.send(world, world.a(LOWER[case.scope]))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"
    if case.scope == "admin":
        assert case.send(world, world.a("read")).status_code == 403


def test_another_apps_key_never_sees_or_changes_this_apps_data(world: World) -> None:
    """In table order (B's writes last); each case checks what B got and that A is intact."""
    reader = world.a("read")
    before = reader.get("/v1/events", params={"limit": "1000"}).json()["events"]
    for case in CASES:
        response = case.send(world, world.b())
        try:
            case.other_app(world, response)
        except AssertionError as error:
            raise AssertionError(f"{case.method} {case.template}: {error}") from error
    assert reader.get(f"/v1/invoices/{world.invoice_id}").json()["status"] == "draft"
    assert reader.get("/v1/tenants/tenant-a/entitlements/beta").json()["allowed"] is True
    after = reader.get("/v1/events", params={"limit": "1000"}).json()["events"]
    assert after == before, "another app's key changed this app's event stream"


def test_the_generic_route_refuses_another_app_id(world: World) -> None:
    response = world.b().post(
        "/v1/commands/pause_subscription",
        json={"app_id": world.server.app_id(A), "subscription_id": world.subscription_id},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "app_id_mismatch"
    typed = world.b().post(
        "/v1/subscriptions",
        json={"app_id": world.server.app_id(A), "tenant_id": "x", "plan_key": "gold"},
    )
    assert typed.status_code == 422
    assert typed.json()["error"]["details"][0]["field"] == "app_id"


def test_a_revoked_key_stops_working(world: World) -> None:
    client = world.server.client("iso-gamma", "read")
    assert client.get("/v1/plans").status_code == 200
    key_id = world.server.key("iso-gamma", "read").split("_")[1]
    done = subprocess.run(
        [*tally_command(), "keys", "revoke", key_id],
        cwd=ROOT,
        env=world.server.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    eventually(lambda: _is_401(client.get("/v1/plans")), timeout=10)


def _is_401(response: httpx.Response) -> None:
    assert response.status_code == 401
