"""The billing engine end to end over HTTP on the real stack (a `tally serve` on PostgreSQL,
NATS JetStream and Redis, with a settable clock): a plan with a base fee in advance and a
graduated overage on a soft metered feature, a billing profile, a tax rate and a coupon, usage,
the upcoming invoice, billing runs, the invoices they make (exact to the minor unit), explain,
the PDF, a mid-period upgrade with prorations, and bad input.

Worked amounts follow Stripe's rules: graduated tiers each priced on their own units
(https://docs.stripe.com/products-prices/pricing-models#graduated-pricing) and prorations as
a credit for the unused time of the old price and a charge for the same time of the new one
(https://docs.stripe.com/billing/subscriptions/prorations). The clock is moved to fixed
instants in 31-day months so every fraction is exact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, eventually

pytestmark = pytest.mark.postgres

EUR = "EUR"
APP = "e2e-billing"
UPGRADE_APP = "e2e-upgrade"
TENANT = "acme-gmbh"
NEXT_YEAR = datetime.now(UTC).year + 1
JANUARY = datetime(NEXT_YEAR, 1, 1, tzinfo=UTC)  # 31 days
MARCH = datetime(NEXT_YEAR, 3, 1, tzinfo=UTC)  # 31 days

TIERS: list[dict[str, Any]] = [
    {"up_to": 1000, "unit_price": {"amount": 2, "currency": EUR}},
    {"up_to": None, "unit_price": {"amount_decimal": "0.5", "currency": EUR}},
]
API: dict[str, Any] = {
    "key": "api",
    "kind": "metered",
    "limit": 1000,
    "enforcement": "soft",
    "overage": {"model": "graduated", "tiers": TIERS},
}
PRO: dict[str, Any] = {
    "plan_key": "pro",
    "name": "Pro",
    "base_price": {"amount": 4900, "currency": EUR},
    "base_fee_timing": "in_advance",
    "interval": "month",
    "features": [API],
}
BIG = {**PRO, "plan_key": "big", "name": "Big", "base_price": {"amount": 9900, "currency": EUR}}
PROFILE = {
    "name": "Acme GmbH",
    "email": "billing@acme.example",
    "country": "DE",
    "tax_status": "taxable",
    "timezone": "Europe/Berlin",
    "currency": EUR,
}


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json()


def money(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": EUR}


def billing_run(admin: httpx.Client, until: datetime) -> dict[str, Any]:
    report = ok(admin.post("/v1/billing-runs", json={"until": until.isoformat()}))
    assert report["complete"] is True, report
    return dict(report)


def invoices_of(reader: httpx.Client, tenant_id: str) -> list[dict[str, Any]]:
    listed = ok(reader.get("/v1/invoices", params={"tenant_id": tenant_id}))["invoices"]
    return sorted(listed, key=lambda invoice: invoice["number"] or 0)


def amounts(invoice: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(li["kind"], li["quantity"], li["amount"]["amount"]) for li in invoice["lines"]]


def assert_totals(invoice: dict[str, Any], subtotal: int, discount: int, tax: int) -> None:
    assert invoice["subtotal"] == money(subtotal)
    assert invoice["discount_total"] == money(discount)
    assert invoice["tax_total"] == money(tax)
    assert invoice["total"] == money(subtotal - discount + tax)
    assert invoice["amount_due"] == invoice["total"]


def usage_event(key: str, quantity: int) -> dict[str, Any]:
    return {"idempotency_key": key, "tenant_id": TENANT, "feature_key": "api", "quantity": quantity}


def set_up_catalog(admin: httpx.Client, writer: httpx.Client) -> None:
    assert ok(admin.post("/v1/plans", json=PRO), 201)["version"] == 1
    ok(writer.put(f"/v1/tenants/{TENANT}/profile", json=PROFILE))
    rate = ok(admin.put("/v1/tax-rates/DE", json={"rate_percent": "19.0", "behavior": "exclusive"}))
    assert rate["country"] == "DE"
    coupon = {"code": "launch10", "percent_off": 10, "duration": "forever"}
    assert ok(admin.post("/v1/coupons", json=coupon), 201)["code"] == "launch10"


def post_usage(writer: httpx.Client) -> None:
    """2,101 calls in three events, the first retried in the batch and once more alone."""
    events = [usage_event("call-1", 700), usage_event("call-2", 700), usage_event("call-3", 701)]
    batch = ok(writer.post("/v1/usage", json={"events": [*events, events[0]]}))
    assert (batch["accepted"], batch["duplicates"], batch["refused"]) == (3, 1, 0), batch
    retry = ok(writer.post("/v1/usage", json=events[0]))
    assert (retry["accepted"], retry["duplicates"]) == (0, 1), retry


# The renewal invoice: the next month's fee in advance and January's usage in arrears.
# 2,101 calls - 1,000 included = 1,101 billable: 1,000 x 2 = 2,000 and 101 x 0.5 = 50.5 -> 51.
# Subtotal 4,900 + 2,000 + 51 = 6,951; 10% off = 695.1 -> 695, shared by largest remainder
# as 490 / 200 / 5; VAT 19% on the nets 4,410 / 1,800 / 46 = 837.9 -> 838, 342, 8.74 -> 9.
RENEWAL_LINES = [
    ("base_fee", 1, 4900),
    ("usage", 1000, 2000),
    ("usage", 101, 51),
    ("discount", 1, -695),
    ("tax", 1, 838),
    ("tax", 1, 342),
    ("tax", 1, 9),
]


def test_a_period_is_billed_with_fee_tiers_coupon_tax_explain_and_pdf(server: Server) -> None:
    admin = server.client(APP, "admin")
    writer = server.client(APP, "write")
    reader = server.client(APP, "read")
    billing_run(admin, JANUARY)  # nothing due yet: the run only moves the clock
    set_up_catalog(admin, writer)

    start = {"tenant_id": TENANT, "plan_key": "pro", "coupon": "launch10"}
    subscription = ok(writer.post("/v1/subscriptions", json=start), 201)
    sid = subscription["subscription_id"]
    period_end = datetime.fromisoformat(subscription["current_period"]["end"])
    assert datetime.fromisoformat(subscription["current_period"]["start"]) == JANUARY
    assert period_end == JANUARY + timedelta(days=31)

    # the fee in advance at the start: 4,900 - 10% (490), VAT 19% of 4,410 = 837.9 -> 838
    opening_run = billing_run(admin, JANUARY)
    assert (opening_run["invoiced"], opening_run["finalized"]) == (1, 1), opening_run
    (opening,) = invoices_of(reader, TENANT)
    assert amounts(opening) == [("base_fee", 1, 4900), ("discount", 1, -490), ("tax", 1, 838)]
    assert_totals(opening, subtotal=4900, discount=490, tax=838)

    assert billing_run(admin, JANUARY + timedelta(days=10))["invoiced"] == 0
    post_usage(writer)

    def upcoming_has_the_usage() -> dict[str, Any]:
        upcoming = ok(reader.get(f"/v1/subscriptions/{sid}/upcoming-invoice"))
        assert amounts(upcoming) == RENEWAL_LINES, upcoming
        return dict(upcoming)

    upcoming = eventually(upcoming_has_the_usage)
    assert upcoming["status"] == "upcoming" and upcoming["total"] == money(7445)
    assert len(invoices_of(reader, TENANT)) == 1  # the preview recorded nothing

    # past the period end: no sleep, the run waits for the usage projection up to its cut-off
    until = period_end + timedelta(hours=1)
    renewal_run = billing_run(admin, until)
    assert (renewal_run["invoiced"], renewal_run["renewed"]) == (1, 1), renewal_run
    opening, renewal = invoices_of(reader, TENANT)
    assert amounts(renewal) == RENEWAL_LINES
    assert_totals(renewal, subtotal=6951, discount=695, tax=1189)
    assert renewal["total"] == money(7445) == upcoming["total"]
    assert renewal["status"] == "open" and renewal["subscription_id"] == sid
    assert [opening["number"], renewal["number"]] == [1, 2]
    assert [opening["number_text"], renewal["number_text"]] == ["INV-000001", "INV-000002"]

    # the same run again creates nothing
    again = billing_run(admin, until)
    assert again["invoiced"] == 0 and again["renewed"] == 0, again
    assert [i["invoice_id"] for i in invoices_of(reader, TENANT)] == [
        opening["invoice_id"],
        renewal["invoice_id"],
    ]

    check_explain(reader, renewal)
    pdf = reader.get(f"/v1/invoices/{renewal['invoice_id']}/pdf")
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"].startswith("application/pdf")
    assert pdf.content.startswith(b"%PDF")


def check_explain(reader: httpx.Client, invoice: dict[str, Any]) -> None:
    explained = ok(reader.get(f"/v1/invoices/{invoice['invoice_id']}/explain"))
    cutoff = explained["usage_cutoff"]
    assert isinstance(cutoff, int) and cutoff == invoice["usage_cutoff"]
    usage_lines = [line for line in explained["lines"] if line["kind"] == "usage"]
    assert len(usage_lines) == 2
    for line in usage_lines:
        assert line["usage"]["quantity"] == 2101 and line["usage"]["events"] == 3, line
        assert [event["type"] for event in line["events"]] == ["UsageRecorded"] * 3
        assert all(0 < event["position"] <= cutoff for event in line["events"]), line
        assert line["usage"]["last_position"] <= cutoff
        assert line["unresolved_event_ids"] == []
    fee = explained["lines"][0]
    assert fee["kind"] == "base_fee"
    assert [event["type"] for event in fee["events"]] == ["SubscriptionRenewed"]


def test_an_upgrade_mid_period_is_prorated_on_the_next_invoice(server: Server) -> None:
    admin = server.client(UPGRADE_APP, "admin")
    writer = server.client(UPGRADE_APP, "write")
    reader = server.client(UPGRADE_APP, "read")
    billing_run(admin, MARCH)
    ok(admin.post("/v1/plans", json=PRO), 201)
    ok(admin.post("/v1/plans", json=BIG), 201)
    subscription = ok(
        writer.post("/v1/subscriptions", json={"tenant_id": TENANT, "plan_key": "pro"}), 201
    )
    sid = subscription["subscription_id"]
    assert billing_run(admin, MARCH)["invoiced"] == 1
    billing_run(admin, MARCH + timedelta(days=15))  # March has 31 days: 16 of them remain

    changed = ok(
        writer.post(
            f"/v1/subscriptions/{sid}/change-plan",
            json={"plan_key": "big", "proration": "create_prorations"},
        )
    )
    assert [p["kind"] for p in changed["pending_prorations"]] == [
        "proration_credit",
        "proration_debit",
    ]
    assert len(invoices_of(reader, TENANT)) == 1  # create_prorations bills nothing at once

    billing_run(admin, MARCH + timedelta(days=31))
    opening, renewal = invoices_of(reader, TENANT)
    assert amounts(opening) == [("base_fee", 1, 4900)]
    # credit 16/31 of 49.00 = 2,529.03 -> 2,529; charge 16/31 of 99.00 = 5,109.68 -> 5,110
    assert amounts(renewal) == [
        ("base_fee", 1, 9900),
        ("proration_credit", 1, -2529),
        ("proration_debit", 1, 5110),
    ]
    assert_totals(renewal, subtotal=9900 - 2529 + 5110, discount=0, tax=0)
    assert [opening["number"], renewal["number"]] == [1, 2]


def test_a_negative_unit_price_is_refused_naming_the_field(server: Server) -> None:
    admin = server.client(APP, "admin")
    reader = server.client(APP, "read")
    bad_tiers = [{**TIERS[0], "unit_price": {"amount": -2, "currency": EUR}}, TIERS[1]]
    feature = {**API, "overage": {"model": "graduated", "tiers": bad_tiers}}
    plan = {**PRO, "plan_key": "cheap", "features": [feature]}
    response = admin.post("/v1/plans", json=plan)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    # pydantic's path, with the model's tag (docs/pricing.md "Prices")
    assert error["details"][0]["field"] == "features.0.overage.graduated.tiers.0.unit_price.amount"
    assert error["details"][0]["field"] in error["message"]
    assert reader.get("/v1/plans/cheap").status_code == 404  # nothing partial was written
